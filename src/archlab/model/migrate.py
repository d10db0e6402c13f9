"""Load checkpoints written in older state-dict layouts (a load-time pre-hook of ``Transformer``).

Numerics version 1 (separate q/k/v and gate/up projections) named a block's weights after
the block knob: a serial block wrapped each sublayer in a ``Residual`` module
(``blocks.i.attn.f.q.weight``, ``blocks.i.attn.norm_in.weight``), a parallel block did not
(``blocks.i.attn.q.weight``, ``blocks.i.norm_in.weight``). Today both blocks name their weights
the same way and the projections are fused:

    v1                                          now
    blocks.i.attn[.f].{q,k,v}.{weight,bias}     blocks.i.attn.qkv.*   (rows q, then k, then v)
    blocks.i.mlp[.f].{fc,gate}.{weight,bias}    blocks.i.mlp.fc.*     (rows up = fc, then gate)
    blocks.i.attn[.f].proj / q_norm / k_norm    blocks.i.attn.proj / q_norm / k_norm
    blocks.i.{attn,mlp}.norm_in                 blocks.i.{attn,mlp}_norm
    blocks.i.{attn,mlp}.norm_out                blocks.i.{attn,mlp}_out_norm
    blocks.i.{attn,mlp}.norm_after              blocks.i.{attn,mlp}_post_norm
    blocks.i.norm_in (parallel)                 blocks.i.norm
    blocks.i.{attn,mlp}_out (parallel)          blocks.i.{attn,mlp}_out_norm
    blocks.i.norm_after (parallel)              blocks.i.post_norm

The fused weights are the old ones concatenated, so a v1 model loads with the same function
(its logits equal up to float summation order; tests/fixtures holds v1 checkpoints).
"""

from __future__ import annotations

import itertools
import re

import torch

_V1_MARK = re.compile(r"blocks\.\d+\.attn\.(f\.)?q\.weight$")
_BLOCK_KEY = re.compile(r"^(blocks\.\d+\.)(.*)$")
_V1_RENAMES = (  # (pattern, replacement) on the part after "blocks.<i>.", applied in order
    (r"^(attn|mlp)\.f\.", r"\1."),
    (r"^(attn|mlp)\.norm_in\.", r"\1_norm."),
    (r"^(attn|mlp)\.norm_out\.", r"\1_out_norm."),
    (r"^(attn|mlp)\.norm_after\.", r"\1_post_norm."),
    (r"^norm_in\.", "norm."),
    (r"^(attn|mlp)_out\.", r"\1_out_norm."),
    (r"^norm_after\.", "post_norm."),
)
_V1_FUSED = (  # (parts, fused name): concatenated along the output rows
    (("attn.q", "attn.k", "attn.v"), "attn.qkv"),
    (("mlp.fc", "mlp.gate"), "mlp.fc"),
)


def is_v1(keys, prefix: str = "") -> bool:
    return any(k.startswith(prefix) and _V1_MARK.search(k) for k in keys)


def _rename(rest: str) -> str:
    for pattern, repl in _V1_RENAMES:
        rest = re.sub(pattern, repl, rest)
    return rest


def upgrade_v1(state: dict, prefix: str = "") -> dict:
    """A v1 state dict (keys under ``prefix``) in today's layout; other keys pass through."""
    out, blocks = {}, set()
    for key, value in state.items():
        m = _BLOCK_KEY.match(key[len(prefix) :]) if key.startswith(prefix) else None
        if m:
            blocks.add(prefix + m[1])
            key = prefix + m[1] + _rename(m[2])
        out[key] = value
    for block in blocks:
        for (parts, fused), p in itertools.product(_V1_FUSED, ("weight", "bias")):
            names = [f"{block}{part}.{p}" for part in parts]
            if all(n in out for n in names):
                out[f"{block}{fused}.{p}"] = torch.cat([out.pop(n) for n in names], dim=0)
    return out


def upgrade_state_dict(module, state_dict, prefix, *args) -> None:
    """``Transformer``'s load_state_dict pre-hook: rewrite an older layout in place."""
    if is_v1(state_dict, prefix):
        upgraded = upgrade_v1(state_dict, prefix)
        state_dict.clear()
        state_dict.update(upgraded)
