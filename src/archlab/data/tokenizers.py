"""Tokenizers (``data.tokenizer``): bytes of documents → token ids."""

from __future__ import annotations

import numpy as np


class ByteTokenizer:
    """One token per UTF-8 byte: vocab 256, nothing to train, nothing unknown."""

    name = "byte"
    vocab_size = 256

    def encode(self, data: bytes) -> np.ndarray:
        return np.frombuffer(data, dtype=np.uint8)

    def decode(self, ids) -> str:
        return bytes(int(i) for i in ids).decode("utf-8", errors="replace")


TOKENIZERS = {"byte": ByteTokenizer}


def make_tokenizer(name: str):
    return TOKENIZERS[name]()
