"""Callbacks: divergence stop (a sweep keeps going, the bad run is marked)."""

from __future__ import annotations

import math

from lightning.pytorch.callbacks import Callback


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
        if step % self.check_every and step != 1:
            return
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
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
