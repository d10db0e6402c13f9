"""Training FLOPs per token (forward + backward = 3 × forward), counting matmuls only."""

from __future__ import annotations

from archlab.config import ModelConfig, d_ff, head_dim, n_kv_heads


def forward_flops_per_token(cfg: ModelConfig, seq_len: int | None = None) -> float:
    """Matmul FLOPs of one forward pass per token, averaged over a causal window of seq_len."""
    from archlab.model.mlp import MLPS

    T = seq_len or cfg.block_size
    d, hd, H, Hkv = cfg.d_model, head_dim(cfg), cfg.n_heads, n_kv_heads(cfg)
    attn_proj = d * hd * (2 * H + 2 * Hkv)  # q, o and k, v projections
    mlp = d * d_ff(cfg) * (3 if MLPS[cfg.mlp].gated else 2)
    # q·k and p·v: a causal query at position t attends to t+1 keys; mean (T+1)/2
    attn_scores = 2 * H * hd * (T + 1) / 2
    per_layer = 2 * (attn_proj + mlp) + 2 * attn_scores
    return cfg.n_layers * per_layer + 2 * d * cfg.vocab_size


def train_flops_per_token(cfg: ModelConfig, seq_len: int | None = None) -> float:
    return 3 * forward_flops_per_token(cfg, seq_len)
