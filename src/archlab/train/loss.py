"""Config group ``loss``: cross-entropy, optionally with PaLM's z-loss.

z-loss adds ``coef · mean(log² Z)`` where Z is the softmax normaliser of the output
logits: it pulls log Z towards 0 and stops output logits from drifting (Chowdhery et al. 2022;
Wortsman et al. 2023).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from archlab.config import ConfigError, LossConfig


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor, coef: float = 0.0):
    """Returns (loss to optimise, dict of parts to log)."""
    logits = logits.float().view(-1, logits.shape[-1])
    ce = F.cross_entropy(logits, targets.reshape(-1))
    return ce, {"ce": ce}


def z_loss(logits: torch.Tensor, targets: torch.Tensor, coef: float):
    logits = logits.float().view(-1, logits.shape[-1])
    log_z = torch.logsumexp(logits, dim=-1)  # (N,)
    ce = (log_z - logits.gather(1, targets.reshape(-1, 1)).squeeze(1)).mean()
    z = coef * log_z.pow(2).mean()
    return ce + z, {"ce": ce, "z_loss": z}


@dataclass(frozen=True)
class Loss:
    fn: Callable  # (logits, targets, coef) → (loss, parts to log)
    check: Callable[[LossConfig], None]  # this option's rules on the loss config

    def __call__(self, logits, targets, coef: float = 0.0):
        return self.fn(logits, targets, coef)


def _check_ce(c: LossConfig) -> None:
    if c.z_loss_coef != 0:
        raise ConfigError("loss.z_loss_coef is set but loss=ce: select loss=z_loss")


def _check_z_loss(c: LossConfig) -> None:
    if c.z_loss_coef <= 0:
        raise ConfigError(
            f"loss=z_loss needs loss.z_loss_coef > 0 (got {c.z_loss_coef}); "
            "use loss=ce to turn it off"
        )


LOSSES = {"ce": Loss(cross_entropy, _check_ce), "z_loss": Loss(z_loss, _check_z_loss)}
