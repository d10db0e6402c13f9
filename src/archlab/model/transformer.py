"""A decoder-only transformer assembled from the knob modules.

tokens (B, T) → embedding (B, T, d) [× sqrt(d)] → [+ absolute positions] → dropout
→ n_layers × Block (serial | parallel; norms per placement; per-layer window / positions)
→ [final norm] → head (B, T, vocab) [× logit_scale] [→ soft-cap]
"""

from __future__ import annotations

import math

import torch
from torch import nn

from archlab.config import ModelConfig
from archlab.model.attention import softcap
from archlab.model.block import BLOCKS, dropout, maybe
from archlab.model.cache import KVCache
from archlab.model.flops import d_ff
from archlab.model.init import INITS
from archlab.model.migrate import upgrade_state_dict
from archlab.model.placement import PLACEMENTS, norm_if
from archlab.model.position import NOPE, make_position
from archlab.model.window import layer_has_position


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.embed_scale = math.sqrt(cfg.d_model) if cfg.scale_embeddings else 1.0
        self.position = make_position(cfg)
        hidden = d_ff(cfg)  # the MLP width (param-matched, iso-params, or set)
        self.blocks = nn.ModuleList(BLOCKS[cfg.block](cfg, i, hidden) for i in range(cfg.n_layers))
        # the position scheme each layer attends with (NoPE for local_global_nope's full layers)
        self.layer_positions = [
            self.position if layer_has_position(cfg, i) else NOPE for i in range(cfg.n_layers)
        ]
        self.norm = norm_if(PLACEMENTS[cfg.norm_placement].final_norm, cfg)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=cfg.head_bias)
        INITS[cfg.init](self, cfg)
        if cfg.tie_embeddings:
            self.head.weight = self.embed.weight
        self.register_load_state_dict_pre_hook(upgrade_state_dict)  # older checkpoint layouts

    def forward(self, idx: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """idx: (B, T) token ids → logits (B, T, vocab). With a cache, idx continues it."""
        start = cache.seen if cache is not None else 0
        pos = torch.arange(start, start + idx.shape[1], device=idx.device)  # (T,)
        self.position.extend(start + idx.shape[1])
        x = self.embed(idx)  # (B, T, d)
        if self.embed_scale != 1.0:
            x = x * self.embed_scale
        x = dropout(self.position.embed(x, pos), self.cfg.embed_dropout, self.training)
        for block, position in zip(self.blocks, self.layer_positions):
            x = block(x, pos, position, cache)
        if cache is not None:
            cache.seen += idx.shape[1]
        logits = self.head(maybe(self.norm, x))  # (B, T, vocab)
        if self.cfg.logit_scale != 1.0:
            logits = logits * self.cfg.logit_scale
        return softcap(logits, self.cfg.logit_softcap)

    @torch.inference_mode()  # no autograd bookkeeping at all: cheaper per op than no_grad
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Sample max_new_tokens after idx (B, T) with a KV cache; returns (B, T + new)."""
        cache = KVCache(self.cfg.n_layers, capacity=idx.shape[1] + max_new_tokens)
        logits = self(idx, cache)[:, -1]  # prefill: (B, vocab)
        out = [idx]
        for i in range(max_new_tokens):
            nxt = sample(logits, temperature, top_k, top_p, generator)  # (B, 1)
            out.append(nxt)
            if i + 1 < max_new_tokens:
                logits = self(nxt, cache)[:, -1]
        return torch.cat(out, dim=1)

    def num_params(self, exclude_embeddings: bool = False) -> int:
        """Exact count of distinct parameters (a tied head counts once)."""
        params = {id(p): p for p in self.parameters()}
        n = sum(p.numel() for p in params.values())
        if exclude_embeddings:
            n -= self.embed.weight.numel()
            if hasattr(self.position, "wpe"):
                n -= self.position.wpe.weight.numel()
        return n


def sample(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
):
    """One token per row from logits (B, vocab): greedy at temperature 0, else top-k / top-p."""
    if temperature <= 0:
        return logits.argmax(-1, keepdim=True)
    logits = logits.float() / temperature
    if top_k:
        kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:  # nucleus: smallest set with mass ≥ top_p
        sorted_logits, order = torch.sort(logits, descending=True)
        probs = torch.softmax(sorted_logits, -1)
        drop = probs.cumsum(-1) - probs >= top_p  # mass before this token already enough
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    probs = torch.softmax(logits, -1)
    return torch.multinomial(probs, 1, generator=generator)
