"""Config group ``loss``: cross-entropy, optionally with PaLM's z-loss.

z-loss adds ``coef · mean(log² Z)`` where Z is the softmax normaliser of the output
logits: it pulls log Z towards 0 and stops output logits from drifting (Chowdhery et al. 2022;
Wortsman et al. 2023).

Both are computed in fp32. fp32 logits (CPU runs) take the plain path. Lower-precision logits
(bf16 / fp16 under autocast) go through :class:`ChunkedCrossEntropy`, which upcasts
``CHUNK_ROWS`` rows at a time in the forward *and* in the backward, so neither pass holds an fp32
copy of the whole (tokens × vocab) logits: for GPT-2 (50k vocab) at 16 × 1024 tokens that copy
alone would be 3.3 GB, twice (the upcast and the saved softmax).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from archlab.config import ConfigError, LossConfig

CHUNK_ROWS = 2048  # rows (tokens) upcast to fp32 at a time


def _row_stats(logits: torch.Tensor, targets: torch.Tensor, chunk: int):
    """fp32 log Z and target logit per row of (N, V) ``logits``, ``chunk`` rows at a time."""
    lse = torch.empty(logits.shape[0], dtype=torch.float32, device=logits.device)
    tgt = torch.empty_like(lse)
    for i in range(0, logits.shape[0], chunk):
        rows = logits[i : i + chunk].float()
        lse[i : i + chunk] = torch.logsumexp(rows, dim=-1)
        tgt[i : i + chunk] = rows.gather(1, targets[i : i + chunk, None]).squeeze(1)
    return lse, tgt


class ChunkedCrossEntropy(torch.autograd.Function):
    """(mean CE, mean log²Z) of (N, V) logits in fp32, without an fp32 (N, V) tensor.

    The backward recomputes each chunk's softmax from the saved (low-precision) logits and the
    fp32 log Z: d/dlogits = softmax · (g_ce + 2·g_z·logZ) / N − onehot · g_ce / N.
    """

    @staticmethod
    def forward(ctx, logits, targets, chunk: int = CHUNK_ROWS):
        lse, tgt = _row_stats(logits, targets, chunk)
        ctx.save_for_backward(logits, targets, lse)
        ctx.chunk = chunk
        return (lse - tgt).mean(), lse.pow(2).mean()

    @staticmethod
    def backward(ctx, g_ce, g_z):
        logits, targets, lse = ctx.saved_tensors
        n, chunk = logits.shape[0], ctx.chunk
        g_ce = g_ce.float() / n if g_ce is not None else torch.zeros((), device=logits.device)
        g_z = g_z.float() / n if g_z is not None else torch.zeros((), device=logits.device)
        grad = torch.empty_like(logits)
        for i in range(0, n, chunk):
            j = slice(i, i + chunk)
            p = torch.exp(logits[j].float() - lse[j, None])  # softmax of the chunk, fp32
            g = p * (g_ce + 2 * g_z * lse[j, None])
            g.scatter_add_(1, targets[j, None], (-g_ce).expand(g.shape[0], 1))
            grad[j] = g.to(logits.dtype)
        return grad, None, None


def _flat(logits: torch.Tensor, targets: torch.Tensor):
    return logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor, coef: float = 0.0):
    """Returns (loss to optimise, dict of parts to log)."""
    logits, targets = _flat(logits, targets)
    if logits.dtype == torch.float32:
        ce = F.cross_entropy(logits, targets)
    else:
        ce, _ = ChunkedCrossEntropy.apply(logits, targets)
    return ce, {"ce": ce}


def z_loss(logits: torch.Tensor, targets: torch.Tensor, coef: float):
    logits, targets = _flat(logits, targets)
    if logits.dtype == torch.float32:
        log_z = torch.logsumexp(logits, dim=-1)  # (N,)
        ce = (log_z - logits.gather(1, targets.reshape(-1, 1)).squeeze(1)).mean()
        z = coef * log_z.pow(2).mean()
    else:
        ce, z2 = ChunkedCrossEntropy.apply(logits, targets)
        z = coef * z2
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
