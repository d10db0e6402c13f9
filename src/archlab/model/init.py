"""Knob ``model/init``: how weights start (norm gains are set by the norms themselves).

    gpt2    normal(0, init_std); residual output projections / sqrt(2·n_layers) (Radford 2019)
    normal  normal(0, init_std) everywhere
    small   normal(0, sqrt(2 / 5d)) (Nguyen & Salazar 2019); residual outputs 2 / (n_layers·sqrt d)
            (Wang 2021, GPT-NeoX's small_init + wang_init)
Biases start at zero.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn


def _apply(model: nn.Module, std: float, residual_std: float) -> None:
    for module in model.modules():
        if isinstance(module, nn.Linear):
            s = residual_std if getattr(module, "residual_out", False) else std
            nn.init.normal_(module.weight, 0.0, s)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, 0.0, std)


def gpt2(model, cfg) -> None:
    _apply(model, cfg.init_std, cfg.init_std / math.sqrt(2 * cfg.n_layers))


def normal(model, cfg) -> None:
    _apply(model, cfg.init_std, cfg.init_std)


def small(model, cfg) -> None:
    d = cfg.d_model
    _apply(model, math.sqrt(2 / (5 * d)), 2 / (cfg.n_layers * math.sqrt(d)))


@dataclass(frozen=True)
class Init:
    apply: Callable  # (model, cfg) → None

    def __call__(self, model, cfg) -> None:
        self.apply(model, cfg)

    def check(self, m) -> None:
        """No rules of its own."""


INITS = {"gpt2": Init(gpt2), "normal": Init(normal), "small": Init(small)}
