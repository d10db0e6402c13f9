"""Knob ``model/mlp``: the feed-forward sublayer.

Non-gated:  proj(act(fc(x)))                 2 matrices, d_ff = 4·d by default
Gated (GLU): proj(act(gate(x)) * fc(x))      3 matrices, d_ff = 8/3·d by default (param-matched)

``model.d_ff`` or ``model.mlp_ratio`` override the width (see ``archlab.model.flops.d_ff``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from archlab.config import ModelConfig, mlp_bias


def relu2(x: torch.Tensor) -> torch.Tensor:
    """Squared ReLU (So et al. 2021, Primer)."""
    return F.relu(x).square()


gelu_tanh = partial(F.gelu, approximate="tanh")  # GPT-2's "gelu_new", Gemma's gelu_pytorch_tanh


@dataclass(frozen=True)
class MLPKind:
    act: Callable[[torch.Tensor], torch.Tensor]
    gated: bool

    def check(self, m: ModelConfig) -> None:
        """No rules of its own: the width rules are the MLP's, in archlab.validate."""


MLPS: dict[str, MLPKind] = {
    "relu": MLPKind(F.relu, gated=False),  # Vaswani et al. 2017
    "relu2": MLPKind(relu2, gated=False),  # So et al. 2021
    "gelu": MLPKind(F.gelu, gated=False),  # exact GeLU (Hendrycks & Gimpel 2016); BERT
    "gelu_tanh": MLPKind(gelu_tanh, gated=False),  # GPT-2, GPT-J
    "swiglu": MLPKind(F.silu, gated=True),  # Shazeer 2020; Llama, PaLM
    "reglu": MLPKind(F.relu, gated=True),  # Shazeer 2020
    "geglu": MLPKind(F.gelu, gated=True),  # Shazeer 2020 (exact GeLU)
    "geglu_tanh": MLPKind(gelu_tanh, gated=True),  # Gemma
}


class MLP(nn.Module):
    def __init__(self, cfg, hidden: int):  # hidden: archlab.model.flops.d_ff(cfg)
        super().__init__()
        kind = MLPS[cfg.mlp]
        bias = mlp_bias(cfg)
        self.act = kind.act
        self.fc = nn.Linear(cfg.d_model, hidden, bias=bias)
        self.gate = nn.Linear(cfg.d_model, hidden, bias=bias) if kind.gated else None
        self.proj = nn.Linear(hidden, cfg.d_model, bias=bias)
        self.proj.residual_out = True  # scaled init (see model/init.py)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, d) → (B, T, d)
        if self.gate is None:
            return self.proj(self.act(self.fc(x)))
        return self.proj(self.act(self.gate(x)) * self.fc(x))
