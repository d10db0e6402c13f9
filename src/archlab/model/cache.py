"""The KV cache for decoding: per layer, the keys/values of the tokens seen so far.

Keys are stored after rotation (RoPE), so a cached key never needs its position again except
for masks and ALiBi, which use ``kpos``. Shapes hold ``n_kv_heads`` (GQA/MQA share them):
k, v (B, n_kv_heads, S, hd). A sliding-window layer keeps only the last ``window − 1`` keys,
all that any later query can see.
"""

from __future__ import annotations

from typing import Optional

import torch


class KVCache:
    def __init__(self, n_layers: int):
        self.k: list[Optional[torch.Tensor]] = [None] * n_layers
        self.v: list[Optional[torch.Tensor]] = [None] * n_layers
        self.kpos: list[Optional[torch.Tensor]] = [None] * n_layers
        self.seen = 0  # tokens processed so far = position of the next token

    def update(self, layer: int, k, v, pos, window: Optional[int]):
        """Append this step's k, v (B, Hkv, T, hd); return all keys/values to attend to."""
        if self.k[layer] is not None:
            k = torch.cat([self.k[layer], k], dim=2)
            v = torch.cat([self.v[layer], v], dim=2)
            pos = torch.cat([self.kpos[layer], pos])
        # fewer keys than the window so far: keep them all (a negative start would wrap)
        drop = 0 if window is None else max(0, k.shape[2] - (window - 1))
        self.k[layer], self.v[layer] = k[:, :, drop:], v[:, :, drop:]
        self.kpos[layer] = pos[drop:]
        return k, v, pos


def kv_bytes_per_token(cfg, bytes_per_value: int = 4) -> int:
    """KV-cache bytes one token costs: keys and values of every layer, n_kv_heads each
    (2 · layers · n_kv_heads · head_dim · bytes; fp32 by default). GQA/MQA shrink it."""
    from archlab.config import head_dim, n_kv_heads

    return 2 * cfg.n_layers * n_kv_heads(cfg) * head_dim(cfg) * bytes_per_value
