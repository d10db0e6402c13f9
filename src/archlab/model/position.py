"""Knob ``model/position``: how the model knows where a token is.

Absolute schemes add a vector to the token embedding (``embed``); relative schemes act on
queries and keys inside attention (``rotate``). ``pos`` is the (T,) tensor of absolute
positions of the current tokens, so the same code serves training and cached decoding.
"""

from __future__ import annotations

import torch
from torch import nn


class Position(nn.Module):
    """Base: no positional information (the identity on both hooks)."""

    def embed(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:  # x: (B, T, d)
        return x

    def rotate(self, q: torch.Tensor, k: torch.Tensor, pos: torch.Tensor):  # (B, H, T, hd)
        return q, k


class Learned(Position):
    """A trained embedding per position (GPT-2)."""

    def __init__(self, cfg):
        super().__init__()
        self.wpe = nn.Embedding(cfg.block_size, cfg.d_model)

    def embed(self, x, pos):
        if int(pos[-1]) >= self.wpe.num_embeddings:
            raise ValueError(
                f"position {int(pos[-1])} is past model.block_size={self.wpe.num_embeddings} "
                "(learned positions cannot extrapolate)"
            )
        return x + self.wpe(pos)


class RoPE(Position):
    """Rotary embeddings (Su et al. 2021), half-split layout as in Llama / GPT-NeoX."""

    def __init__(self, cfg):
        super().__init__()
        from archlab.config import head_dim

        dim = head_dim(cfg)
        inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self._cache_len = 0
        self._build(cfg.block_size)

    def _build(self, length: int) -> None:
        t = torch.arange(length, dtype=torch.float32, device=self.inv_freq.device)
        freqs = torch.outer(t, self.inv_freq)  # (L, hd/2)
        self.register_buffer("cos", freqs.cos(), persistent=False)
        self.register_buffer("sin", freqs.sin(), persistent=False)
        self._cache_len = length

    def rotate(self, q, k, pos):
        if int(pos[-1]) >= self._cache_len:
            self._build(2 * int(pos[-1]) + 1)
        cos, sin = self.cos[pos], self.sin[pos]  # (T, hd/2)
        return _rotate(q, cos, sin), _rotate(k, cos, sin)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.float().chunk(2, dim=-1)
    out = torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)
    return out.type_as(x)


POSITIONS: dict[str, type[Position]] = {"learned": Learned, "rope": RoPE}


def make_position(cfg) -> Position:
    return POSITIONS[cfg.position](cfg)
