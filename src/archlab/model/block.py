"""A transformer block: attention then MLP, each wrapped by the chosen norm placement."""

from __future__ import annotations

from torch import nn

from archlab.model.attention import Attention
from archlab.model.mlp import MLP
from archlab.model.placement import PLACEMENTS


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        wrap = PLACEMENTS[cfg.norm_placement]
        self.attn = wrap(Attention(cfg), cfg)
        self.mlp = wrap(MLP(cfg), cfg)

    def forward(self, x, pos, position):
        x = self.attn(x, pos=pos, position=position)
        return self.mlp(x)
