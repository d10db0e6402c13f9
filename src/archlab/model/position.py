"""Knob ``model/position``: how the model knows where a token is.

Absolute schemes add a vector to the token embedding (``embed``); relative schemes act inside
attention, on queries and keys (``rotate``) or as a score bias (``bias``). ``pos`` is the (T,)
tensor of absolute positions of the current tokens, so the same code serves training and
cached decoding. ``extend(length)`` runs once per forward, before any layer, with the end of
``pos`` as a Python int: tables grow there (and learned positions refuse to extrapolate), so
no layer ever reads a tensor value.

    learned     trained table (GPT-2)                        absolute, ≤ block_size
    sinusoidal  fixed sin/cos (Vaswani et al. 2017)          absolute
    rope        rotary (Su et al. 2021), optionally partial  relative (GPT-J: rope_fraction)
    alibi       linear distance penalty (Press et al. 2022)  relative
    nope        nothing (Kazemnejad et al. 2023)
"""

from __future__ import annotations

import math

import torch
from torch import nn

from archlab.config import ConfigError, head_dim, rotary_dim


class Position(nn.Module):
    """Base, and ``nope``: no positional information (identity hooks)."""

    relative = True  # acts inside attention (so it can be left out of single layers)
    has_bias = False  # contributes a score bias (ALiBi): attention then builds a mask

    def __init__(self, cfg=None):
        super().__init__()

    @staticmethod
    def check(m) -> None:
        """This option's rules on the model config (none by default)."""

    @staticmethod
    def n_params(cfg) -> int:
        return 0  # relative and fixed schemes train nothing

    def extend(self, length: int) -> None:  # positions 0 .. length − 1 are about to be used
        pass

    def embed(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:  # x: (B, T, d)
        return x

    def rotate(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:  # (B, T, heads, hd)
        return x  # queries and keys, all heads at once

    def bias(self, dist: torch.Tensor) -> torch.Tensor | None:  # dist = q_pos − k_pos (T, S)
        return None  # or an additive score bias (H, T, S)


class Learned(Position):
    """A trained embedding per position (GPT-2)."""

    relative = False

    def __init__(self, cfg):
        super().__init__()
        self.wpe = nn.Embedding(cfg.block_size, cfg.d_model)

    @staticmethod
    def n_params(cfg) -> int:
        return cfg.block_size * cfg.d_model

    def extend(self, length):
        if length > self.wpe.num_embeddings:
            raise ValueError(
                f"position {length - 1} is past model.block_size={self.wpe.num_embeddings} "
                "(learned positions cannot extrapolate)"
            )

    def embed(self, x, pos):
        return x + self.wpe(pos)


class Sinusoidal(Position):
    """PE(p, 2i) = sin(p / 10000^(2i/d)), PE(p, 2i+1) = cos(…)  (Vaswani et al. 2017)."""

    relative = False

    @staticmethod
    def check(m) -> None:
        if m.d_model % 2:
            raise ConfigError(
                f"model.position=sinusoidal pairs sin/cos dims, so model.d_model={m.d_model} "
                "must be even"
            )

    def __init__(self, cfg):
        super().__init__()
        d = cfg.d_model
        inv_freq = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(10000.0) / d))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def embed(self, x, pos):
        angles = pos.float()[:, None] * self.inv_freq  # (T, d/2)
        pe = torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(-2)  # (T, d) interleaved
        return x + pe.to(x.dtype)


class RoPE(Position):
    """Rotary embeddings (Su et al. 2021), half-split layout as in Llama / GPT-NeoX:
    x · cos + rotate_half(x) · sin on each head's first ``rotary_dim`` dims, with
    rotate_half(x1, x2) = (−x2, x1). The cos/sin tables are built once (and grown on demand),
    in one buffer indexed once per layer; the sign of rotate_half sits in the sin table
    (rotate_half(x)·sin = (x2, x1)·(−sin₁, sin₂): the same values, since (−a)·b = a·(−b)
    exactly), so a rotation is chunk, cat, two products and a sum: no negation, no casts in fp32.

    With ``model.rope_fraction`` < 1 only the first ``rotary_dim`` dims of each head rotate,
    the rest pass through (GPT-J, GPT-NeoX)."""

    @staticmethod
    def check(m) -> None:
        if not 0 < m.rope_fraction <= 1:
            raise ConfigError(f"model.rope_fraction={m.rope_fraction} must be in (0, 1]")
        if rotary_dim(m) % 2 or rotary_dim(m) == 0:
            raise ConfigError(
                f"model.position=rope rotates pairs of dims, but model.rope_fraction="
                f"{m.rope_fraction} × head dim {head_dim(m)} = {head_dim(m) * m.rope_fraction:g}"
                " is not a positive even number: change rope_fraction, d_model or n_heads"
            )

    def __init__(self, cfg):
        super().__init__()
        self.rot = rotary_dim(cfg)
        exps = torch.arange(0, self.rot, 2, dtype=torch.float32) / self.rot
        self.register_buffer("inv_freq", 1.0 / (cfg.rope_theta**exps), persistent=False)
        self._build(cfg.block_size)

    def _build(self, length: int) -> None:
        t = torch.arange(length, dtype=torch.float32, device=self.inv_freq.device)
        freqs = torch.outer(t, self.inv_freq).repeat(1, 2)  # (L, rot): both halves alike
        sin, half = freqs.sin(), self.rot // 2
        signed_sin = torch.cat([-sin[:, :half], sin[:, half:]], dim=-1)  # rotate_half's sign
        table = torch.stack([freqs.cos(), signed_sin], dim=1)[:, :, None]  # (L, 2, 1, rot)
        self.register_buffer("table", table, persistent=False)

    def extend(self, length):
        if length > self.table.shape[0]:  # decoding / evaluating past block_size
            self._build(2 * length)  # room to go on without a rebuild per token

    def rotate(self, x, pos):
        cos, sin = self.table[pos].unbind(1)  # (T, 1, rot) each
        partial = self.rot < x.shape[-1]
        x_rot = x[..., : self.rot] if partial else x
        x1, x2 = x_rot.chunk(2, dim=-1)
        out = x_rot * cos + torch.cat([x2, x1], dim=-1) * sin
        if out.dtype != x.dtype:  # low-precision q/k (autocast): back to their dtype
            out = out.to(x.dtype)
        return torch.cat([out, x[..., self.rot :]], dim=-1) if partial else out


def alibi_slopes(n_heads: int) -> list[float]:
    """Head h's slope 2^(−8(h+1)/n); non-powers of two interleave the next power's (Press et al.)."""
    if math.log2(n_heads).is_integer():
        return [2 ** (-8 * (h + 1) / n_heads) for h in range(n_heads)]
    closest = 2 ** math.floor(math.log2(n_heads))
    return alibi_slopes(closest) + alibi_slopes(2 * closest)[0::2][: n_heads - closest]


class ALiBi(Position):
    """score(q_t, k_s) −= slope_h · (t − s)  (Press et al. 2022)."""

    has_bias = True

    def __init__(self, cfg):
        super().__init__()
        slopes = torch.tensor(alibi_slopes(cfg.n_heads), dtype=torch.float32)
        self.register_buffer("slopes", slopes, persistent=False)

    def bias(self, dist):
        return -self.slopes[:, None, None] * dist.float()  # (H, T, S)


POSITIONS: dict[str, type[Position]] = {
    "learned": Learned,
    "sinusoidal": Sinusoidal,
    "rope": RoPE,
    "alibi": ALiBi,
    "nope": Position,
}

NOPE = Position()  # what global layers of model.window=local_global_nope use


def make_position(cfg) -> Position:
    return POSITIONS[cfg.position](cfg)
