"""Knob ``model/norm``: which normalisation layer (also used by ``model/qk_norm``).

Every norm's gain is ``offset + weight`` with ``weight`` starting at ``1 − offset``:
offset 0 is the usual parametrisation, offset 1 is Gemma's ``(1 + w)`` (``model.norm_weight_offset``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from archlab.config import ConfigError, norm_bias


class RMSNorm(nn.Module):
    """x / rms(x) · g  (Zhang & Sennrich 2019): no mean subtraction, no bias."""

    @staticmethod
    def check(m) -> None:  # as model.norm (model.qk_norm never has a bias)
        if m.norm_bias:
            raise ConfigError(
                "model.norm_bias=true but model.norm=rmsnorm has no bias: use "
                "model/norm=layernorm, or set model.norm_bias=null"
            )

    def __init__(self, dim: int, eps: float = 1e-5, bias: bool = False, offset: float = 0.0):
        super().__init__()
        self.eps, self.offset = eps, offset
        self.weight = nn.Parameter(torch.full((dim,), 1.0 - offset))

    @staticmethod
    def n_params(dim: int, bias: bool) -> int:
        return dim  # a gain only

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gain = self.weight + self.offset if self.offset else self.weight
        if x.dtype == torch.float32:  # the same values as below, without two no-op casts
            return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * gain
        # normalise in fp32 (as Llama does), cast back
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return xf.type_as(x) * gain


class LayerNorm(nn.Module):
    """(x − mean) / std · g (+ b)  (Ba et al. 2016); bias per ``model.norm_bias``."""

    @staticmethod
    def check(m) -> None:
        """No rules of its own."""

    def __init__(self, dim: int, eps: float = 1e-5, bias: bool = False, offset: float = 0.0):
        super().__init__()
        self.eps, self.offset = eps, offset
        self.weight = nn.Parameter(torch.full((dim,), 1.0 - offset))
        self.bias = nn.Parameter(torch.zeros(dim)) if bias else None

    @staticmethod
    def n_params(dim: int, bias: bool) -> int:
        return dim * (2 if bias else 1)  # gain (+ bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gain = self.weight + self.offset if self.offset else self.weight
        return F.layer_norm(x, self.weight.shape, gain, self.bias, self.eps)


NORMS: dict[str, type[nn.Module]] = {"layernorm": LayerNorm, "rmsnorm": RMSNorm}

# knob ``model/qk_norm``: normalise q and k before the dot product
QK_NORMS: dict[str, type[nn.Module] | None] = {"none": None, **NORMS}


class AcrossHeads(nn.Module):
    """Apply a norm over all heads at once: (B, T, H, hd) seen as (B, T, H·hd) (OLMo 2)."""

    def __init__(self, norm: nn.Module):
        super().__init__()
        self.norm = norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.flatten(-2)).view_as(x)


# ``model.qk_norm_scope``: (norm class, n_heads, head_dim, cfg) → module on (B, T, H, hd)
QK_NORM_SCOPES = {
    "head": lambda norm, n, hd, cfg: norm(hd, eps=cfg.norm_eps, offset=cfg.norm_weight_offset),
    "full": lambda norm, n, hd, cfg: AcrossHeads(
        norm(n * hd, eps=cfg.norm_eps, offset=cfg.norm_weight_offset)
    ),
}


def make_norm(cfg, dim: int | None = None) -> nn.Module:
    return NORMS[cfg.norm](
        dim or cfg.d_model, eps=cfg.norm_eps, bias=norm_bias(cfg), offset=cfg.norm_weight_offset
    )


def norm_params(cfg, dim: int | None = None) -> int:
    """Parameters of one ``make_norm(cfg)``."""
    from archlab.config import norm_bias

    return NORMS[cfg.norm].n_params(dim or cfg.d_model, norm_bias(cfg))


def make_qk_norm(cfg, n_heads: int, head_dim: int) -> nn.Module | None:
    """The q or k norm of ``model/qk_norm`` on (B, T, heads, hd), or None (no module at all)."""
    norm = QK_NORMS[cfg.qk_norm]
    return QK_NORM_SCOPES[cfg.qk_norm_scope](norm, n_heads, head_dim, cfg) if norm else None


def qk_norm_params(cfg, n_heads: int, head_dim: int) -> int:
    """Parameters of one ``make_qk_norm`` (gains only: q/k norms never have a bias)."""
    if QK_NORMS[cfg.qk_norm] is None:
        return 0
    return head_dim * (n_heads if cfg.qk_norm_scope == "full" else 1)
