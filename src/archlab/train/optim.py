"""AdamW with decay / no-decay parameter groups, and linear warmup + cosine decay to a floor."""

from __future__ import annotations

import math

import torch
from torch import nn

from archlab.config import OptimConfig


def param_groups(model: nn.Module, cfg: OptimConfig) -> list[dict]:
    """Weight decay on matrices; none on norms, biases and embeddings unless configured."""
    decay, no_decay, seen = [], [], set()
    for module in model.modules():
        for _, p in module.named_parameters(recurse=False):
            if id(p) in seen or not p.requires_grad:
                continue  # a tied head is the embedding: classified once, as an embedding
            seen.add(id(p))
            if isinstance(module, nn.Embedding):
                (decay if cfg.decay_embeddings else no_decay).append(p)
            elif p.ndim < 2:  # norm gains and biases
                (decay if cfg.decay_norms_and_biases else no_decay).append(p)
            else:
                decay.append(p)
    return [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def make_optimizer(model: nn.Module, cfg: OptimConfig, fused: bool = False):
    return torch.optim.AdamW(
        param_groups(model, cfg),
        lr=cfg.lr,
        betas=(cfg.beta1, cfg.beta2),
        eps=cfg.eps,
        fused=fused or None,
    )


def lr_multiplier(step: int, cfg: OptimConfig, max_steps: int) -> float:
    """Linear warmup to 1, then cosine decay to ``min_lr_ratio`` at ``max_steps``."""
    if step < cfg.warmup_steps:
        return (step + 1) / (cfg.warmup_steps + 1)
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, max_steps - cfg.warmup_steps))
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
