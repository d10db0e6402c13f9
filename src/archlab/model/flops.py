"""Training FLOPs per token (forward + backward = 3 × forward), counting matmuls only; and the
closed-form parameter count of any config (checked against the built model in the tests).

Two ways to count attention's q·k and p·v products (``attention=``):

* ``"causal"`` (default; used for MFU and the FLOPs axis of comparisons): the *model* FLOPs,
  each query paying only for the keys it may see — the mean causal span, capped by a layer's
  sliding window. This is what an ideal kernel must do, whatever the implementation.
* ``"dense"``: the full T × T score matrix of every layer, as the kernels that run on CPU
  actually compute it (masked entries included) and as ``torch.utils.flop_counter`` counts
  it. The tests check ``dense`` against :func:`executed_flops` exactly for every preset.

``causal ≤ dense`` term by term, so model FLOPs never exceed the FLOPs executed: MFU can
exceed 100% only if the measured matmul peak underestimates the machine (``archlab bench``
measures the peak as the best of several sizes and clamps/flags MFU > 1 regardless).
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
from torch.utils import flop_counter as fcm

from archlab.config import ModelConfig, attn_bias, head_dim, mlp_bias, n_kv_heads, norm_bias
from archlab.model.mlp import MLPS
from archlab.model.placement import PLACEMENTS
from archlab.model.window import layer_window


def d_ff(m: ModelConfig) -> int:
    """Hidden width of the MLP: ``model.d_ff``, else iso-parameter matched, else
    ``mlp_ratio·d``, else param-matched (4·d, or 8/3·d for gated MLPs)."""
    if m.d_ff is not None:
        return m.d_ff
    if m.iso_params:
        return iso_params_d_ff(m)
    if m.mlp_ratio is not None:
        return round(m.mlp_ratio * m.d_model)
    if MLPS[m.mlp].gated:  # 3 matrices: 8/3·d keeps 3·d·d_ff ≈ 8·d² (Shazeer 2020)
        width = int(8 * m.d_model / 3)
        return m.multiple_of * math.ceil(width / m.multiple_of)
    return 4 * m.d_model


def _mean_span(T: int, window: int | None) -> float:
    """Mean number of keys a causal query sees over positions 0..T-1 (capped by a window)."""
    if window is None or window >= T:
        return (T + 1) / 2
    return (window * (window + 1) / 2 + (T - window) * window) / T


def forward_flops_per_token(
    cfg: ModelConfig, seq_len: int | None = None, attention: str = "causal"
) -> float:
    """Matmul FLOPs of one forward pass per token, averaged over a causal window of seq_len
    (``attention="dense"``: every query pays for all seq_len keys, see the module docstring).

    Parallel blocks do the same matmuls as serial ones; an untied head costs the same matmul
    as a tied one; partial RoPE, soft-caps and norms are elementwise and not counted."""
    if attention not in ("causal", "dense"):
        raise ValueError(f"attention={attention!r}: use 'causal' or 'dense'")
    T = seq_len or cfg.block_size
    d, hd, H, Hkv = cfg.d_model, head_dim(cfg), cfg.n_heads, n_kv_heads(cfg)
    attn_proj = d * hd * (2 * H + 2 * Hkv)  # q, o and k, v projections
    mlp = d * d_ff(cfg) * (3 if MLPS[cfg.mlp].gated else 2)
    total = 0.0
    for i in range(cfg.n_layers):
        # q·k and p·v over the keys each query attends to (sliding-window layers see fewer)
        span = T if attention == "dense" else _mean_span(T, layer_window(cfg, i))
        attn_scores = 2 * H * hd * span
        total += 2 * (attn_proj + mlp) + 2 * attn_scores
    return total + 2 * d * cfg.vocab_size


def train_flops_per_token(
    cfg: ModelConfig, seq_len: int | None = None, attention: str = "causal"
) -> float:
    """Forward + backward: the backward pass does two matmuls (input and weight gradients)
    per forward matmul, so 3 × forward."""
    return 3 * forward_flops_per_token(cfg, seq_len, attention)


def executed_flops(model, idx, backward: bool = True) -> int:
    """Matmul FLOPs one forward (+ backward of ``logits.sum()``) of ``model`` on ``idx`` really
    executes, counted by ``torch.utils.flop_counter.FlopCounterMode``.

    torch's counter knows no formula for the fused CPU attention kernel
    (``_scaled_dot_product_flash_attention_for_cpu`` and its backward), so it would count
    plain causal attention as 0 FLOPs on CPU; we register the same dense formula torch uses
    for the GPU kernels (full T × S, no causal savings)."""
    aten = torch.ops.aten
    custom = {}
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu"):
        custom[aten._scaled_dot_product_flash_attention_for_cpu] = (
            lambda q, k, v, *_, out_shape=None, **__: fcm.sdpa_flop_count(q, k, v)
        )
        custom[aten._scaled_dot_product_flash_attention_for_cpu_backward] = (
            lambda g, q, k, v, *_, out_shape=None, **__: fcm.sdpa_backward_flop_count(g, q, k, v)
        )
    with fcm.FlopCounterMode(display=False, custom_mapping=custom) as counter:
        out = model(idx)
        if backward:
            out.float().sum().backward()
    return counter.get_total_flops()


def param_count(cfg: ModelConfig) -> int:
    """Number of parameters, in closed form from the config (a tied head counts once)."""
    d, hd, H, Hkv, ff = cfg.d_model, head_dim(cfg), cfg.n_heads, n_kv_heads(cfg), d_ff(cfg)
    attn = d * hd * (2 * H + 2 * Hkv) + attn_bias(cfg) * (hd * (H + 2 * Hkv) + d)
    n_mats = 3 if MLPS[cfg.mlp].gated else 2
    mlp = n_mats * d * ff + mlp_bias(cfg) * ((n_mats - 1) * ff + d)
    norm = d * (2 if cfg.norm == "layernorm" and norm_bias(cfg) else 1)
    qk = 0
    if cfg.qk_norm != "none":
        qk = hd * (H + Hkv) if cfg.qk_norm_scope == "full" else 2 * hd  # gains only, no bias
    p = PLACEMENTS[cfg.norm_placement]
    slots = p.norm_in + p.norm_out + p.norm_after
    if cfg.block == "parallel":  # one shared input norm, an output norm per sublayer
        norms = p.norm_in + 2 * p.norm_out + p.norm_after
    else:
        norms = 2 * slots
    per_layer = attn + mlp + qk + norms * norm
    embed = cfg.vocab_size * d + (cfg.block_size * d if cfg.position == "learned" else 0)
    final = norm if p.final_norm else 0
    head = (0 if cfg.tie_embeddings else cfg.vocab_size * d) + cfg.head_bias * cfg.vocab_size
    return cfg.n_layers * per_layer + embed + final + head


def iso_params_reference(cfg: ModelConfig) -> ModelConfig:
    """The architecture iso-parameter arms are matched to: MHA with a 4·d GeLU MLP."""
    return replace(
        cfg,
        mlp="gelu",
        attention="mha",
        n_kv_heads=None,
        d_ff=None,
        mlp_ratio=None,
        iso_params=False,
    )


def iso_params_d_ff(cfg: ModelConfig) -> int:
    """The d_ff that brings ``cfg``'s parameter count closest to the reference's.

    The count is affine in d_ff (each hidden unit adds one column per MLP matrix, plus
    biases), so two evaluations give its slope; the residual is under one unit's worth
    (≤ 3·d_model + 2 parameters per layer)."""
    target = param_count(iso_params_reference(cfg))
    free = replace(cfg, iso_params=False, mlp_ratio=None)
    one, two = param_count(replace(free, d_ff=1)), param_count(replace(free, d_ff=2))
    per_unit = two - one
    return max(1, round((target - (one - per_unit)) / per_unit))
