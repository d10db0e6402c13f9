"""Config group ``loss``: cross-entropy, optionally with PaLM's z-loss.

z-loss adds ``coef · mean(log² Z)`` where Z is the softmax normaliser of the output
logits: it pulls log Z towards 0 and stops output logits from drifting (Chowdhery et al. 2022;
Wortsman et al. 2023).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


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


LOSSES = {"ce": cross_entropy, "z_loss": z_loss}
