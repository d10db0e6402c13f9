"""Knob ``model/mlp``: the feed-forward sublayer.

Non-gated:  proj(act(fc(x)))                 2 matrices, d_ff = 4·d by default
Gated (GLU): proj(act(gate(x)) * fc(x))      3 matrices, d_ff = 8/3·d by default (param-matched)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class MLPKind:
    act: Callable[[torch.Tensor], torch.Tensor]
    gated: bool


MLPS: dict[str, MLPKind] = {
    "gelu": MLPKind(F.gelu, gated=False),  # GPT-2 / BERT
    "swiglu": MLPKind(F.silu, gated=True),  # Shazeer 2020; Llama, PaLM
}


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        from archlab.config import d_ff

        kind = MLPS[cfg.mlp]
        hidden = d_ff(cfg)
        self.act = kind.act
        self.fc = nn.Linear(cfg.d_model, hidden, bias=cfg.bias)
        self.gate = nn.Linear(cfg.d_model, hidden, bias=cfg.bias) if kind.gated else None
        self.proj = nn.Linear(hidden, cfg.d_model, bias=cfg.bias)
        self.proj.residual_out = True  # scaled init (see Transformer._init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gate is None:
            return self.proj(self.act(self.fc(x)))
        return self.proj(self.act(self.gate(x)) * self.fc(x))
