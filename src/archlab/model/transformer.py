"""A decoder-only transformer assembled from the knob modules.

    tokens (B, T) → embedding (B, T, d) → [+ absolute positions] → n_layers × Block
    → [final norm] → head (B, T, vocab)
"""

from __future__ import annotations

import math

import torch
from torch import nn

from archlab.config import ModelConfig
from archlab.model.block import Block
from archlab.model.norm import make_norm
from archlab.model.placement import PLACEMENTS
from archlab.model.position import make_position


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.position = make_position(cfg)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = make_norm(cfg) if PLACEMENTS[cfg.norm_placement].final_norm else nn.Identity()
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.head.weight = self.embed.weight
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        """normal(0, σ); residual output projections get σ / sqrt(2·n_layers) (GPT-2)."""
        std = self.cfg.init_std
        if isinstance(module, nn.Linear):
            if getattr(module, "residual_out", False):
                std = std / math.sqrt(2 * self.cfg.n_layers)
            nn.init.normal_(module.weight, 0.0, std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, 0.0, std)

    def forward(self, idx: torch.Tensor, start_pos: int = 0) -> torch.Tensor:
        """idx: (B, T) token ids → logits (B, T, vocab)."""
        pos = torch.arange(start_pos, start_pos + idx.shape[1], device=idx.device)
        x = self.position.embed(self.embed(idx), pos)
        for block in self.blocks:
            x = block(x, pos, self.position)
        return self.head(self.norm(x))

    def num_params(self, exclude_embeddings: bool = False) -> int:
        """Exact count of distinct parameters (a tied head counts once)."""
        params = {id(p): p for p in self.parameters()}
        n = sum(p.numel() for p in params.values())
        if exclude_embeddings:
            n -= self.embed.weight.numel()
            if hasattr(self.position, "wpe"):
                n -= self.position.wpe.weight.numel()
        return n
