"""Validation with a measured noise floor, and long context scored on the same tokens.

* :func:`val_loss_and_se`: the mean cross-entropy over the fixed validation windows and its
  standard error over windows (per-token losses are correlated inside a window, so the window
  is the unit of sampling). Every run records it (``val/loss_se``, ``summary.val_loss_se``):
  the evaluation noise shared by every arm that uses these windows. The per-window losses are
  recorded too (``summary.val_window_losses``), so ``archlab compare`` can measure the
  evaluation noise of a *difference* between arms on the same windows.
* :func:`long_context`: for ``train.eval_context_multiples=[k, ...]``, windows of ``k·T`` tokens
  of the validation split, and their targets at positions ``>= T`` scored two ways on
  **identical text**: with the full context (everything before the target in the long window)
  and with the context cut to the trained length (a sliding window of at most ``T`` tokens,
  stride ``T/4``: each target sees between ``3T/4`` and ``T`` tokens). ``gain = cut − full``
  is what the longer context buys (positive) or costs (negative). Also the full-context loss
  per position bucket ``[0,T)``, ``[T,2T)``, ``[2T,4T)`` … and a binned per-position curve.
  A scheme that cannot represent the positions (learned embeddings) gets ``null`` with the
  reason.
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F

LONG_WINDOWS = 64  # long windows scored per multiple (each is k·T tokens)
CURVE_BINS = 32


@torch.no_grad()
def token_losses(fn, x: torch.Tensor, y: torch.Tensor, batch: int, device) -> torch.Tensor:
    """Per-token cross-entropy, shape ``(windows, T)``, in fp32."""
    out = []
    for i in range(0, len(x), batch):
        xb, yb = x[i : i + batch].to(device), y[i : i + batch].to(device)
        logits = fn(xb).float()
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), yb.reshape(-1), reduction="none")
        out.append(ce.view(yb.shape).cpu())
    return torch.cat(out)


def mean_and_se(values: torch.Tensor) -> tuple[float, float | None]:
    """Mean of per-window values and its standard error (None with one window)."""
    v = values.double()
    n = len(v)
    se = float(v.std(unbiased=True) / math.sqrt(n)) if n > 1 else None
    return float(v.mean()), se


def val_loss_and_se(fn, x, y, batch: int, device) -> tuple[float, float | None, list[float]]:
    """(mean, its standard error over windows, the per-window means)."""
    per_window = token_losses(fn, x, y, batch, device).mean(dim=1)
    mean, se = mean_and_se(per_window)
    return mean, se, [round(float(v), 6) for v in per_window]


@torch.no_grad()
def cut_context_losses(fn, x: torch.Tensor, y: torch.Tensor, T: int, device) -> torch.Tensor:
    """Losses of targets ``[T, L)`` with the context cut to at most ``T`` tokens (stride T/4)."""
    stride = max(1, T // 4)
    L, parts, scored_to = x.shape[1], [], T
    while scored_to < L:
        end = min(scored_to + stride, L)
        sub_x, sub_y = x[:, end - T : end].to(device), y[:, end - T : end].to(device)
        logits = fn(sub_x).float()
        ce = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), sub_y.reshape(-1), reduction="none"
        ).view(sub_y.shape)
        parts.append(ce[:, scored_to - end :].cpu())  # the targets not scored yet
        scored_to = end
    return torch.cat(parts, dim=1)


def _buckets(per_pos: torch.Tensor, T: int) -> dict[str, float]:
    edges, out = [0, T], {}
    while edges[-1] < per_pos.shape[0]:
        edges.append(min(edges[-1] * 2, per_pos.shape[0]))
    for lo, hi in itertools.pairwise(edges):
        out[f"[{lo},{hi})"] = float(per_pos[lo:hi].mean())
    return out


def _curve(per_pos: torch.Tensor) -> dict[str, list]:
    L = per_pos.shape[0]
    width = max(1, math.ceil(L / CURVE_BINS))
    pos = list(range(0, L, width))
    return {"position": pos, "loss": [float(per_pos[p : p + width].mean()) for p in pos]}


def long_context(fn, tokens, T: int, k: int, batch: int, device) -> dict:
    """The same-token long-context report for multiple ``k`` (see the module docstring)."""
    from archlab.data.windows import val_windows

    x, y = val_windows(tokens, k * T, LONG_WINDOWS)
    try:
        full = token_losses(fn, x, y, batch, device)
    except (ValueError, IndexError, RuntimeError) as err:  # e.g. learned positions past T
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return {"null": f"cannot score positions beyond {T}: {reason}"}
    cut = cut_context_losses(fn, x, y, T, device)
    gains = cut.mean(dim=1) - full[:, T:].mean(dim=1)  # per window: what the long context buys
    gain, gain_se = mean_and_se(gains)
    per_pos = full.mean(dim=0)
    return {
        "full": float(full[:, T:].mean()),
        "cut": float(cut.mean()),
        "gain": gain,
        "gain_se": gain_se,
        "all_positions": float(full.mean()),
        "buckets": _buckets(per_pos, T),
        "curve": _curve(per_pos),
        "windows": len(x),
    }
