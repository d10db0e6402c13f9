"""Knob ``model/block``: how attention and MLP combine in one layer, norms per ``placement.py``.

serial    x = x + attn(x);  x = x + mlp(x)       GPT-2, Llama (each wrapped in norms)
parallel  x = x + attn(n(x)) + mlp(n(x))          GPT-J, PaLM, Cohere: one shared input norm

Both blocks name their sublayers ``attn`` and ``mlp`` (state-dict keys ``blocks.i.attn.qkv``,
``blocks.i.mlp.fc``, … whatever the knob). Norm slots are attributes named after where they
sit (``attn_norm``, ``attn_out_norm``, ``attn_post_norm``; a parallel block's shared input
``norm`` and ``post_norm``); a slot the placement lacks is None, not an identity module.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from archlab.model.attention import Attention
from archlab.model.mlp import MLP
from archlab.model.norm import norm_params
from archlab.model.placement import PLACEMENTS, norm_if


def maybe(norm: nn.Module | None, x: torch.Tensor) -> torch.Tensor:
    return x if norm is None else norm(x)


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    return F.dropout(x, p, training) if p and training else x


class SerialBlock(nn.Module):
    """Each sublayer f: x → post_norm(x + drop(out_norm(f(norm(x)))))."""

    @staticmethod
    def check(m) -> None:
        """No rules of its own."""

    def __init__(self, cfg, layer: int, hidden: int):  # hidden: model.flops.d_ff(cfg)
        super().__init__()
        p = PLACEMENTS[cfg.norm_placement]
        self.attn, self.mlp = Attention(cfg, layer), MLP(cfg, hidden)
        self.attn_norm, self.mlp_norm = norm_if(p.norm_in, cfg), norm_if(p.norm_in, cfg)
        self.attn_out_norm, self.mlp_out_norm = norm_if(p.norm_out, cfg), norm_if(p.norm_out, cfg)
        self.attn_post_norm = norm_if(p.norm_after, cfg)
        self.mlp_post_norm = norm_if(p.norm_after, cfg)
        self.p_drop = cfg.resid_dropout

    @staticmethod
    def n_norms(p) -> int:
        return 2 * (p.norm_in + p.norm_out + p.norm_after)

    def forward(self, x, pos, position, cache=None):  # x: (B, T, d)
        h = self.attn(maybe(self.attn_norm, x), pos, position, cache)
        h = dropout(maybe(self.attn_out_norm, h), self.p_drop, self.training)
        x = maybe(self.attn_post_norm, x + h)
        h = maybe(self.mlp_out_norm, self.mlp(maybe(self.mlp_norm, x)))
        h = dropout(h, self.p_drop, self.training)
        return maybe(self.mlp_post_norm, x + h)


class ParallelBlock(nn.Module):
    check = SerialBlock.check

    def __init__(self, cfg, layer: int, hidden: int):
        super().__init__()
        p = PLACEMENTS[cfg.norm_placement]
        self.attn, self.mlp = Attention(cfg, layer), MLP(cfg, hidden)
        self.norm = norm_if(p.norm_in, cfg)  # shared by both sublayers
        self.attn_out_norm, self.mlp_out_norm = norm_if(p.norm_out, cfg), norm_if(p.norm_out, cfg)
        self.post_norm = norm_if(p.norm_after, cfg)
        self.p_drop = cfg.resid_dropout

    @staticmethod
    def n_norms(p) -> int:
        return p.norm_in + 2 * p.norm_out + p.norm_after

    def forward(self, x, pos, position, cache=None):  # x: (B, T, d)
        h = maybe(self.norm, x)
        a = maybe(self.attn_out_norm, self.attn(h, pos, position, cache))
        m = maybe(self.mlp_out_norm, self.mlp(h))
        a, m = dropout(a, self.p_drop, self.training), dropout(m, self.p_drop, self.training)
        return maybe(self.post_norm, x + a + m)


BLOCKS: dict[str, type[nn.Module]] = {"serial": SerialBlock, "parallel": ParallelBlock}


def block_params(cfg, hidden: int) -> int:
    """Parameters of one block: attention, MLP and the norms the block and placement have."""
    norms = BLOCKS[cfg.block].n_norms(PLACEMENTS[cfg.norm_placement])
    return Attention.n_params(cfg) + MLP.n_params(cfg, hidden) + norms * norm_params(cfg)
