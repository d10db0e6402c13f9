"""Callbacks: divergence stop (a sweep keeps going, the bad run is marked), stability telemetry."""

from __future__ import annotations

import inspect
import math

import torch
from lightning.pytorch.callbacks import Callback

from archlab.model.attention import Attention


class DivergenceStop(Callback):
    """Stop a run whose loss is NaN/inf, or stays far above its initial loss.

    Diverged: the loss is not finite, or it exceeds ``factor × initial loss`` for ``patience``
    consecutive steps (one spike is not a divergence). The step is kept in
    ``pl_module.diverged_at_step``; run.py records ``status: diverged``.
    """

    def __init__(self, factor: float = 1.5, patience: int = 3, check_every: int = 1):
        self.factor, self.patience, self.check_every = factor, patience, check_every
        self.initial_loss: float | None = None
        self.strikes = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        step = trainer.global_step
        if not pl_module.step_ends(batch_idx) or (step % self.check_every and step != 1):
            return
        loss = pl_module.step_loss  # the optimizer step's loss (mean over its micro-batches)
        if trainer.world_size > 1:  # every rank must take the same decision
            loss = trainer.strategy.reduce(loss.detach(), reduce_op="mean")
        loss = float(loss)
        if self.initial_loss is None and math.isfinite(loss):
            self.initial_loss = loss
        too_high = self.initial_loss is not None and loss > self.factor * self.initial_loss
        self.strikes = self.strikes + 1 if too_high else 0
        if not math.isfinite(loss) or self.strikes >= self.patience:
            pl_module.diverged_at_step = step
            trainer.should_stop = True

    def state_dict(self) -> dict:
        return {"initial_loss": self.initial_loss, "strikes": self.strikes}

    def load_state_dict(self, state: dict) -> None:
        self.initial_loss, self.strikes = state["initial_loss"], state["strikes"]


class Telemetry(Callback):
    """Stability telemetry every ``every`` steps, logged to every logger (W&B, metrics.jsonl):

    attn/max_logit/layer{i}, attn/max_logit  largest pre-softmax q·k logit per layer / overall
    logits/mean, logits/max, logits/mean_log_z  output-logit drift and the softmax normaliser
    grad_norm (before clipping), param_norm, update_ratio = ‖θ_t − θ_{t−1}‖ / ‖θ_{t−1}‖
    loss_spikes  cumulative count of steps whose loss exceeds its running mean by
                 ``spike_sigma`` running standard deviations

    The logit statistics come from a separate no-grad pass of the *uncompiled* model over the
    first ``rows`` sequences of the step's batch, so a compiled training step is untouched
    (and never recompiles).
    """

    def __init__(self, every: int, rows: int = 4, spike_sigma: float = 4.0):
        self.every, self.rows, self.spike_sigma = every, rows, spike_sigma
        self.spikes, self.ema, self.ema_var, self.seen = 0, 0.0, 0.0, 0
        self._before: list | None = None

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        if (trainer.global_step + 1) % self.every == 0:  # the step about to be taken is logged
            self._before = [p.detach().clone() for p in pl_module.model.parameters()]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if not pl_module.step_ends(batch_idx):  # gradient accumulation: once per optimizer step
            return
        self._count_spike(pl_module.step_loss.item())
        step = trainer.global_step
        if step % self.every:
            return
        with pl_module.autocast():  # the training forward's precision
            logit_stats = self._logit_stats(pl_module.model, batch[0][: self.rows])
        row = {
            **logit_stats,
            **self._weight_stats(pl_module.model),
            "loss_spikes": self.spikes,
        }
        if pl_module._grad_norm is not None:
            row["grad_norm"] = float(pl_module._grad_norm)
        pl_module._emit(step, row)

    def _count_spike(self, loss: float) -> None:
        if not math.isfinite(loss):
            return
        self.seen += 1
        if self.seen > 10 and loss - self.ema > self.spike_sigma * math.sqrt(self.ema_var):
            self.spikes += 1
        delta = loss - self.ema if self.seen > 1 else 0.0
        self.ema = loss if self.seen == 1 else self.ema + 0.1 * delta
        self.ema_var = 0.9 * (self.ema_var + 0.1 * delta * delta)

    @staticmethod
    def _logit_stats(model, x) -> dict:

        per_layer: list[float] = []

        def hook(module, args, kwargs):
            bound = inspect.signature(module.forward).bind(*args, **kwargs)
            a = bound.arguments
            per_layer.append(module.max_logit(a["x"], a["pos"], a["position"]).item())

        attns = [m for m in model.modules() if isinstance(m, Attention)]
        handles = [m.register_forward_pre_hook(hook, with_kwargs=True) for m in attns]
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                logits = model(x).float()  # 4 rows: the fp32 copy is small
        finally:
            for h in handles:
                h.remove()
            model.train(was_training)
        row = {f"attn/max_logit/layer{i}": v for i, v in enumerate(per_layer)}
        row["attn/max_logit"] = max(per_layer) if per_layer else None
        row.update(
            {
                "logits/mean": logits.mean().item(),
                "logits/max": logits.max().item(),
                "logits/mean_log_z": torch.logsumexp(logits, -1).mean().item(),
            }
        )
        return row

    def _weight_stats(self, model) -> dict:
        params = [p.detach().float() for p in model.parameters()]
        norm = math.sqrt(sum(p.pow(2).sum().item() for p in params))
        row = {"param_norm": norm}
        if self._before is not None:
            before = [b.float() for b in self._before]
            diff = math.sqrt(sum((p - b).pow(2).sum().item() for p, b in zip(params, before)))
            old = math.sqrt(sum(b.pow(2).sum().item() for b in before))
            row["update_ratio"] = diff / max(old, 1e-12)
            self._before = None
        return row

    def state_dict(self) -> dict:
        return {"spikes": self.spikes, "ema": self.ema, "ema_var": self.ema_var, "seen": self.seen}

    def load_state_dict(self, state: dict) -> None:
        self.spikes, self.ema, self.ema_var, self.seen = (
            state["spikes"],
            state["ema"],
            state["ema_var"],
            state["seen"],
        )
