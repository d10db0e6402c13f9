"""The one LightningModule every arm trains with."""

from __future__ import annotations

import time

import lightning as L
import torch

from archlab.config import ArchlabConfig
from archlab.model import Transformer
from archlab.model.flops import train_flops_per_token
from archlab.train.distributed import mean_across_ranks, shard
from archlab.train.loss import LOSSES
from archlab.train.optim import lr_multiplier, make_optimizer


class LitLM(L.LightningModule):
    def __init__(
        self, cfg: ArchlabConfig, val_data: tuple[torch.Tensor, torch.Tensor], val_tokens=None
    ):
        super().__init__()
        self.cfg = cfg
        self.model = Transformer(cfg.model)
        self.loss_fn = LOSSES[cfg.loss.name]
        self.val_x, self.val_y = val_data
        self.val_tokens = val_tokens  # the val split, for evaluation at longer contexts
        self.val_loss_at: dict[str, float | None] = {}
        self.long_context: dict[str, dict] = {}  # same-token long-context reports (k -> dict)
        self.last_val_se: float | None = None  # standard error of the val loss over windows
        self.last_val_windows: list[float] = []  # per-window val losses of the last evaluation
        self.tokens_per_step = cfg.train.batch_size * cfg.model.block_size
        self.flops_per_token = train_flops_per_token(cfg.model)
        # not a registered submodule: the state dict holds each weight once, as model.*
        self.__dict__["forward_fn"] = self.model  # a compiled wrapper in setup() if asked
        self.last_val_loss: float | None = None
        self.last_train_loss: float | None = None
        self.diverged_at_step: int | None = None  # set by callbacks.DivergenceStop
        self._interval_losses: list[torch.Tensor] = []
        self._parts: dict[str, torch.Tensor] = {}
        self._grad_norm: torch.Tensor | None = None
        self._clock: float | None = None
        self._train_time = 0.0  # seconds spent in training steps (excludes validation)
        self._train_time_logged = 0.0
        self.first_step_wall: float | None = None  # time.time() after the first optimizer step

    def setup(self, stage: str) -> None:
        if self.cfg.trainer.compile and self.forward_fn is self.model:
            # kept out of the module tree so checkpoints hold plain (uncompiled) weights
            self.__dict__["forward_fn"] = torch.compile(self.model)

    # ------------------------------------------------------------------ training
    @property
    def tokens_seen(self) -> int:
        return self.global_step * self.tokens_per_step  # batch_size is the global batch

    def training_step(self, batch, batch_idx):
        x, y = shard(batch, self._trainer)  # this rank's rows of the global batch
        loss, parts = self.loss_fn(self.forward_fn(x), y, self.cfg.loss.z_loss_coef)
        self._interval_losses.append(loss.detach())
        self._parts = {k: v.detach() for k, v in parts.items()}
        return loss

    def configure_gradient_clipping(
        self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None
    ):
        # the norm before clipping is what we log; max_norm=inf measures without clipping
        max_norm = self.cfg.optim.grad_clip or float("inf")
        self._grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)

    def configure_optimizers(self):
        # fused AdamW: one kernel for all parameters (CPU too: 4-5x faster than the per-tensor loop)
        opt = make_optimizer(self.model, self.cfg.optim, fused=self.device.type in ("cuda", "cpu"))
        schedule = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda step: lr_multiplier(step, self.cfg.optim, self.cfg.train.max_steps)
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def on_train_batch_start(self, batch, batch_idx):
        if self._clock is None:
            self._clock = time.perf_counter()

    def on_train_batch_end(self, outputs, batch, batch_idx):
        if self.first_step_wall is None:
            self.first_step_wall = time.time()
        step, t = self.global_step, self.cfg.train
        now = time.perf_counter()
        self._train_time += now - self._clock
        self._clock = now
        if step % t.log_every == 0 or step in (1, t.max_steps) or self.diverged_at_step:
            self._log_train(step)
        if (step % t.val_every == 0 or step == t.max_steps) and not self.diverged_at_step:
            self._log_val(step)
        self._clock = time.perf_counter()  # validation time is not training time

    def _log_train(self, step: int) -> None:
        n = len(self._interval_losses)
        loss = mean_across_ranks(torch.stack(self._interval_losses).mean(), self._trainer).item()
        self._interval_losses.clear()
        self.last_train_loss = loss
        dt, self._train_time_logged = self._train_time - self._train_time_logged, self._train_time
        row = {
            "train/loss": loss,
            "lr": self.lr_schedulers().get_last_lr()[0],
            "grad_norm": float(self._grad_norm) if self._grad_norm is not None else None,
            "tokens_per_sec": n * self.tokens_per_step / max(dt, 1e-9),
            **{
                f"train/{k}": mean_across_ranks(v, self._trainer).item()
                for k, v in self._parts.items()
                if k != "ce"
            },
        }
        self._emit(step, row)
        self.log("loss", loss, prog_bar=True, logger=False)
        self.log("tok/s", float(round(row["tokens_per_sec"])), prog_bar=True, logger=False)

    def _emit(self, step: int, row: dict) -> None:
        """One record per step to every logger (W&B, metrics.jsonl, CSV)."""
        tokens = self.tokens_seen
        row = {
            "tokens": tokens,
            "time": self._train_time,
            "flops": tokens * self.flops_per_token,
            **{k: v for k, v in row.items() if v is not None},
        }
        for logger in self.loggers:
            logger.log_metrics(row, step=step)

    # ------------------------------------------------------------------ validation
    def evaluate(self, x=None, y=None, fn=None) -> float:
        """Mean cross-entropy over the fixed validation windows (sets ``last_val_se``)."""
        from archlab.train.evaluation import val_loss_and_se

        x = self.val_x if x is None else x
        y = self.val_y if y is None else y
        was_training = self.model.training
        self.model.eval()
        loss, self.last_val_se, self.last_val_windows = val_loss_and_se(
            fn or self.forward_fn, x, y, self.cfg.train.batch_size, self.device
        )
        self.model.train(was_training)
        return loss

    def evaluate_long_context(self, k: int) -> dict:
        """Same-token long-context report at ``k``× the trained length (train/evaluation.py);
        the eager model: a new length would recompile, and compiled graphs skip range checks."""
        from archlab.train.evaluation import long_context

        was_training = self.model.training
        self.model.eval()
        T, bs = self.cfg.model.block_size, self.cfg.train.batch_size
        try:
            return long_context(self.model, self.val_tokens, T, k, bs, self.device)
        finally:
            self.model.train(was_training)

    def _log_val(self, step: int) -> None:
        self.last_val_loss = self.evaluate()
        row = {"val/loss": self.last_val_loss, "val/loss_se": self.last_val_se}
        if step == self.cfg.train.max_steps:
            for k in self.cfg.train.eval_context_multiples:
                report = self.long_context[f"{k}x"] = self.evaluate_long_context(k)
                self.val_loss_at[f"{k}x"] = report.get("all_positions")
                row[f"val/loss@{k}x"] = self.val_loss_at[f"{k}x"]
                for name in ("full", "cut", "gain"):
                    row[f"val/long{k}x_{name}"] = report.get(name)
        self._emit(step, row)
        self.log("val", self.last_val_loss, prog_bar=True, logger=False)
