"""FlexAttention for the attention variants the fused SDPA kernels cannot take.

Sliding windows, ALiBi and soft-capped scores need an explicit (T × S) mask or score tensor on
the reference path (:mod:`archlab.model.attention`), which rules out the flash / memory-
efficient kernels. ``torch.nn.attention.flex_attention`` (torch ≥ 2.5) compiles the same
rules into one fused kernel instead: the window and causality become a *block mask* (blocks
that are entirely masked are skipped, so a window of W costs O(T·W), not O(T²)), and the soft-cap
and the ALiBi bias become a *score modification* applied to each scaled q·k score, in the
reference order: scale → soft-cap → + ALiBi bias → causal / window mask → softmax.

Used on CUDA only, for full-sequence forwards without attention dropout (flex has none) and
without a KV cache (:func:`wanted`); the reference path stays for CPU, decoding and as the
ground truth. On CPU, flex_attention runs eagerly (unfused) — that is how the tests check it
against the reference; the compiled GPU kernel itself is only exercised on a GPU.
"""

from __future__ import annotations

import functools

import torch


@functools.cache
def available() -> bool:
    try:
        from torch.nn.attention import flex_attention  # noqa: F401
    except ImportError:
        return False
    return True


def wanted(q: torch.Tensor, window, position, cap, dropout: float, full_sequence: bool) -> bool:
    """Use flex for this forward: a CUDA tensor, a variant SDPA cannot fuse, no dropout/cache."""
    if position.has_bias and getattr(position, "slopes", None) is None:
        return False  # a bias flex has no score_mod for (only ALiBi's slopes are known here)
    needs_scores = window is not None or position.has_bias or cap is not None
    return q.is_cuda and needs_scores and dropout == 0.0 and full_sequence and available()


@functools.cache
def _block_mask(q_len: int, kv_len: int, window: int | None, device: str):
    from torch.nn.attention.flex_attention import create_block_mask

    def mask_mod(b, h, q_idx, kv_idx):
        dist = q_idx - kv_idx  # keys come from the same positions as the queries
        return (dist >= 0) & (dist < window) if window is not None else dist >= 0

    return create_block_mask(mask_mod, None, None, q_len, kv_len, device=device)


def _score_mod(cap: float | None, slopes: torch.Tensor | None):
    def score_mod(score, b, h, q_idx, kv_idx):
        if cap is not None:
            score = cap * torch.tanh(score / cap)
        if slopes is not None:
            score = score - slopes[h] * (q_idx - kv_idx).float()
        return score

    return score_mod if (cap is not None or slopes is not None) else None


@functools.cache
def _compiled():
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False)


def attend(q, k, v, window: int | None, position, scale: float, cap: float | None, compile=None):
    """Causal attention of q (B, H, T, hd) over k, v (B, H or Hkv, T, hd) with the layer's
    window, ALiBi slopes (``position.slopes`` when the scheme has a bias) and soft-cap; shared
    key/value heads (GQA) are read in place, never copied."""
    from torch.nn.attention.flex_attention import flex_attention

    T = q.shape[2]
    block_mask = _block_mask(T, k.shape[2], window, str(q.device))
    slopes = position.slopes if position.has_bias else None
    fn = _compiled() if (q.is_cuda if compile is None else compile) else flex_attention
    score_mod, gqa = _score_mod(cap, slopes), k.shape[1] != q.shape[1]
    return fn(q, k, v, score_mod=score_mod, block_mask=block_mask, scale=scale, enable_gqa=gqa)
