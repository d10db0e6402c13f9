"""Training batches and validation windows.

The batch of training step ``i`` is a pure function of (seed, i, data): window offsets come
from ``numpy.random.default_rng([seed, i])``. So two arms with the same seed see the same
batches whatever their model config (paired comparisons), and a resumed run continues with
exactly the batches the uninterrupted run would have seen. Validation uses a fixed set of
evenly spaced windows of the val split, the same for every arm and every seed.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from archlab.config import ConfigError


def _windows(tokens: np.ndarray, offsets: np.ndarray, length: int):
    w = np.stack([tokens[o : o + length + 1] for o in offsets]).astype(np.int64)
    w = torch.from_numpy(w)
    return w[:, :-1], w[:, 1:]  # inputs, targets: (B, T)


class TrainBatches(Dataset):
    """Map-style dataset indexed by optimizer step; item i is the whole batch of step i."""

    def __init__(self, tokens: np.ndarray, seq_len: int, batch_size: int, seed: int):
        if len(tokens) < seq_len + 2:
            raise ConfigError(
                f"the training split has {len(tokens)} tokens, fewer than one window of "
                f"model.block_size={seq_len} + 1: use more text or a smaller block_size"
            )
        self.tokens, self.seq_len, self.batch_size, self.seed = tokens, seq_len, batch_size, seed

    def __len__(self) -> int:
        return 2**62  # indexed by step; the sampler decides which steps

    def __getitem__(self, step: int):
        rng = np.random.default_rng([self.seed, step])
        offsets = rng.integers(0, len(self.tokens) - self.seq_len - 1, size=self.batch_size)
        return _windows(self.tokens, offsets, self.seq_len)


def val_windows(tokens: np.ndarray, seq_len: int, n: int):
    """Fixed, evenly spaced validation windows: (inputs, targets), each (n, T)."""
    if len(tokens) < seq_len + 1:
        raise ConfigError(
            f"the validation split has {len(tokens)} tokens, fewer than one window of "
            f"model.block_size={seq_len} + 1: raise data.val_fraction or use more text"
        )
    last = len(tokens) - seq_len - 1
    offsets = np.unique(np.linspace(0, last, num=n).astype(np.int64))
    return _windows(tokens, offsets, seq_len)


def train_loader(batches: TrainBatches, first_step: int, last_step: int) -> DataLoader:
    """Batches for steps first_step … last_step - 1 (first_step > 0 when resuming)."""
    return DataLoader(batches, batch_size=None, sampler=range(first_step, last_step))
