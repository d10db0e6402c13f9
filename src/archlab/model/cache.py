"""The KV cache for decoding: per layer, the keys/values of the tokens seen so far.

Keys are stored after rotation (RoPE), so a cached key never needs its position again except
for masks and ALiBi, which use ``kpos``. Shapes hold ``n_kv_heads`` (GQA/MQA share them):
k, v (B, n_kv_heads, S, hd). A sliding-window layer keeps only the last ``window − 1`` keys,
all that any later query can see.

Full-attention layers append into preallocated buffers (``capacity`` tokens when the caller
knows the final length, as ``generate`` does; otherwise capacity doubles), and ``k``/``v`` are
views of the filled part: appending a token costs O(1) copies, not a ``torch.cat`` of the
whole history (which was ~46% of decode time at 500 cached tokens). A full layer holds every
position from 0 on, so its ``kpos`` is a view of a fixed ``arange`` (no copy per token).
"""

from __future__ import annotations

import torch

from archlab.config import head_dim, n_kv_heads


class KVCache:
    def __init__(self, n_layers: int, capacity: int | None = None):
        self.k: list[torch.Tensor | None] = [None] * n_layers
        self.v: list[torch.Tensor | None] = [None] * n_layers
        self.kpos: list[torch.Tensor | None] = [None] * n_layers
        self.seen = 0  # tokens processed so far = position of the next token
        self.capacity = capacity  # expected total tokens (None: grow by doubling)
        self._buf: list[tuple | None] = [None] * n_layers  # full layers: (k, v, pos) buffers

    def update(self, layer: int, k, v, pos, window: int | None):
        """Append this step's k, v (B, Hkv, T, hd) at positions ``pos`` (the T positions that
        follow ``seen``); return all keys/values to attend to, with their positions."""
        if window is None:
            return self._append(layer, k, v, pos)
        if self.k[layer] is not None:
            k = torch.cat([self.k[layer], k], dim=2)
            v = torch.cat([self.v[layer], v], dim=2)
            pos = torch.cat([self.kpos[layer], pos])
        # fewer keys than the window so far: keep them all (a negative start would wrap)
        drop = 0 if window is None else max(0, k.shape[2] - (window - 1))
        self.k[layer], self.v[layer] = k[:, :, drop:], v[:, :, drop:]
        self.kpos[layer] = pos[drop:]
        return k, v, pos

    def _append(self, layer: int, k, v, pos):
        old = 0 if self.k[layer] is None else self.k[layer].shape[2]
        n = old + k.shape[2]
        buf = self._buf[layer]
        if buf is None or buf[0].shape[2] < n:
            cap = max(n, self.capacity or 0, 2 * buf[0].shape[2] if buf is not None else 0)
            B, H, _, hd = k.shape
            buf = (
                k.new_empty(B, H, cap, hd),
                v.new_empty(B, H, cap, v.shape[3]),
                torch.arange(cap, dtype=pos.dtype, device=pos.device),  # = the key positions
            )
            if old:
                buf[0][:, :, :old], buf[1][:, :, :old] = self.k[layer], self.v[layer]
            self._buf[layer] = buf
        kb, vb, pb = buf
        kb[:, :, old:n], vb[:, :, old:n] = k, v
        self.k[layer], self.v[layer], self.kpos[layer] = kb[:, :, :n], vb[:, :, :n], pb[:n]
        return self.k[layer], self.v[layer], self.kpos[layer]

    def allocated_bytes(self) -> int:
        """Bytes the cache holds, spare capacity included (``k``/``v`` nbytes: the used part)."""
        total = 0
        for layer, buf in enumerate(self._buf):
            if buf is not None:
                total += buf[0].nbytes + buf[1].nbytes
            elif self.k[layer] is not None:
                total += self.k[layer].nbytes + self.v[layer].nbytes
        return total


def kv_bytes_per_token(cfg, bytes_per_value: int = 4) -> int:
    """KV-cache bytes one token costs: keys and values of every layer, n_kv_heads each
    (2 · layers · n_kv_heads · head_dim · bytes; fp32 by default). GQA/MQA shrink it."""
    return 2 * cfg.n_layers * n_kv_heads(cfg) * head_dim(cfg) * bytes_per_value
