"""Knob ``model/norm``: which normalisation layer (also used by ``model/qk_norm``)."""

from __future__ import annotations

import torch
from torch import nn


class RMSNorm(nn.Module):
    """x / rms(x) · g  (Zhang & Sennrich 2019): no mean subtraction, no bias."""

    def __init__(self, dim: int, eps: float = 1e-5, bias: bool = False):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # normalise in fp32 (as Llama does), cast back
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return xf.type_as(x) * self.weight


class LayerNorm(nn.LayerNorm):
    """(x − mean) / std · g (+ b)  (Ba et al. 2016); the bias follows ``model.bias``."""

    def __init__(self, dim: int, eps: float = 1e-5, bias: bool = False):
        super().__init__(dim, eps=eps, bias=bias)


NORMS: dict[str, type[nn.Module]] = {"layernorm": LayerNorm, "rmsnorm": RMSNorm}

# knob ``model/qk_norm``: normalise q and k over the head dim before the dot product
QK_NORMS: dict[str, type[nn.Module] | None] = {"none": None, **NORMS}


def make_norm(cfg, dim: int | None = None) -> nn.Module:
    return NORMS[cfg.norm](dim or cfg.d_model, eps=cfg.norm_eps, bias=cfg.bias)
