"""Knob ``model/block``: how attention and MLP combine in one layer, norms per ``placement.py``.

serial    x = x + attn(x);  x = x + mlp(x)       GPT-2, Llama (each wrapped in norms)
parallel  x = x + attn(n(x)) + mlp(n(x))          GPT-J, PaLM, Cohere: one shared input norm
"""

from __future__ import annotations

from torch import nn

from archlab.model.attention import Attention
from archlab.model.flops import d_ff
from archlab.model.mlp import MLP
from archlab.model.placement import PLACEMENTS, norm_if


class Residual(nn.Module):
    """One residual branch: x → norm_after(x + drop(norm_out(f(norm_in(x)))))."""

    def __init__(self, f: nn.Module, cfg):
        super().__init__()
        p = PLACEMENTS[cfg.norm_placement]
        self.norm_in, self.f = norm_if(p.norm_in, cfg), f
        self.norm_out, self.norm_after = norm_if(p.norm_out, cfg), norm_if(p.norm_after, cfg)
        self.drop = nn.Dropout(cfg.resid_dropout)

    def forward(self, x, **kw):
        return self.norm_after(x + self.drop(self.norm_out(self.f(self.norm_in(x), **kw))))


class SerialBlock(nn.Module):
    @staticmethod
    def check(m) -> None:
        """No rules of its own."""

    def __init__(self, cfg, layer: int):
        super().__init__()
        self.attn = Residual(Attention(cfg, layer), cfg)
        self.mlp = Residual(MLP(cfg, d_ff(cfg)), cfg)

    def forward(self, x, pos, position, cache=None):  # x: (B, T, d)
        x = self.attn(x, pos=pos, position=position, cache=cache)
        return self.mlp(x)


class ParallelBlock(nn.Module):
    check = SerialBlock.check

    def __init__(self, cfg, layer: int):
        super().__init__()
        p = PLACEMENTS[cfg.norm_placement]
        self.norm_in = norm_if(p.norm_in, cfg)  # shared by both sublayers
        self.attn, self.mlp = Attention(cfg, layer), MLP(cfg, d_ff(cfg))
        self.attn_out, self.mlp_out = norm_if(p.norm_out, cfg), norm_if(p.norm_out, cfg)
        self.norm_after = norm_if(p.norm_after, cfg)
        self.drop = nn.Dropout(cfg.resid_dropout)

    def forward(self, x, pos, position, cache=None):  # x: (B, T, d)
        h = self.norm_in(x)
        a = self.attn_out(self.attn(h, pos=pos, position=position, cache=cache))
        m = self.mlp_out(self.mlp(h))
        return self.norm_after(x + self.drop(a) + self.drop(m))


BLOCKS: dict[str, type[nn.Module]] = {"serial": SerialBlock, "parallel": ParallelBlock}
