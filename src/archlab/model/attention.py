"""Knob ``model/attention`` (MHA / GQA / MQA) and ``model/qk_norm``: causal self-attention.

GQA shares each key/value head among ``n_heads / n_kv_heads`` query heads (Ainslie et al.
2023); MQA is the limit of one kv head (Shazeer 2019). The attention product goes through
``F.scaled_dot_product_attention`` so GPU runs get fused flash kernels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from archlab.model.norm import QK_NORMS


def _mha(m) -> None:
    if m.n_kv_heads not in (None, m.n_heads):
        from archlab.config import ConfigError

        raise ConfigError(
            f"model.attention=mha uses n_kv_heads = n_heads, but model.n_kv_heads={m.n_kv_heads}"
            f" and model.n_heads={m.n_heads}: use model/attention=gqa, or drop model.n_kv_heads"
        )


def _gqa(m) -> None:
    from archlab.config import ConfigError, n_kv_heads

    kv = n_kv_heads(m)
    if m.n_heads % kv:
        raise ConfigError(
            f"model.n_kv_heads={kv} must divide model.n_heads={m.n_heads}: "
            f"choose n_kv_heads among the divisors of {m.n_heads}"
        )


def _mqa(m) -> None:
    if m.n_kv_heads != 1:
        from archlab.config import ConfigError

        raise ConfigError(
            f"model.attention=mqa needs model.n_kv_heads=1 (got {m.n_kv_heads}): "
            "use model/attention=gqa for more kv heads"
        )


@dataclass(frozen=True)
class AttentionKind:
    check: Callable  # validation of n_kv_heads against n_heads


ATTENTIONS = {"mha": AttentionKind(_mha), "gqa": AttentionKind(_gqa), "mqa": AttentionKind(_mqa)}


class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        from archlab.config import head_dim, n_kv_heads

        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, n_kv_heads(cfg), head_dim(cfg)
        self.q = nn.Linear(cfg.d_model, self.n_heads * self.head_dim, bias=cfg.bias)
        self.k = nn.Linear(cfg.d_model, self.n_kv_heads * self.head_dim, bias=cfg.bias)
        self.v = nn.Linear(cfg.d_model, self.n_kv_heads * self.head_dim, bias=cfg.bias)
        self.proj = nn.Linear(self.n_heads * self.head_dim, cfg.d_model, bias=cfg.bias)
        self.proj.residual_out = True  # scaled init (see Transformer._init_weights)
        qk_norm = QK_NORMS[cfg.qk_norm]
        self.q_norm = qk_norm(self.head_dim, eps=cfg.norm_eps) if qk_norm else nn.Identity()
        self.k_norm = qk_norm(self.head_dim, eps=cfg.norm_eps) if qk_norm else nn.Identity()

    def forward(self, x: torch.Tensor, pos: torch.Tensor, position) -> torch.Tensor:
        B, T, _ = x.shape
        q = self.q(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, T, hd)
        k = self.k(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, Hkv, T, hd)
        v = self.v(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        q, k = self.q_norm(q), self.k_norm(k)
        q, k = position.rotate(q, k, pos)
        if self.n_kv_heads != self.n_heads:  # each kv head serves n_heads / n_kv_heads queries
            rep = self.n_heads // self.n_kv_heads
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, hd)
        return self.proj(y.transpose(1, 2).reshape(B, T, self.n_heads * self.head_dim))
