"""Token store: each split tokenised once into a memory-mapped array, keyed by
source fingerprint + tokenizer. Builds are atomic (written to a temp dir, renamed into
place) and serialised by a file lock, so parallel sweep jobs never see a partial cache:
one builds, the others wait and reuse it.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from archlab.config import ConfigError, DataConfig
from archlab.data.sources import make_source
from archlab.data.tokenizers import make_tokenizer


@dataclass
class TokenSplits:
    train: np.ndarray  # memmap of token ids
    val: np.ndarray
    fingerprint: str
    vocab_size: int
    description: str
    tokenizer: object


def _dtype(vocab_size: int):
    return np.uint16 if vocab_size <= 2**16 else np.uint32


def load_tokens(cfg: DataConfig) -> TokenSplits:
    source = make_source(cfg)
    tokenizer = make_tokenizer(cfg.tokenizer)
    fingerprint = source.fingerprint()
    key = f"{cfg.source}-{fingerprint}-{tokenizer.name}-val{cfg.val_fraction:g}"
    root = Path(os.path.expanduser(cfg.cache_dir)) / "tokens"
    final = root / key
    if not (final / "meta.json").exists():
        root.mkdir(parents=True, exist_ok=True)
        with open(root / f"{key}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one job builds; the others wait here
            if not (final / "meta.json").exists():
                _build(source, tokenizer, root, final)
    meta = json.loads((final / "meta.json").read_text())
    dtype = np.dtype(meta["dtype"])
    splits = {
        s: np.memmap(final / f"{s}.bin", dtype=dtype, mode="r") if meta[s] else np.zeros(0, dtype)
        for s in ("train", "val")
    }
    return TokenSplits(splits["train"], splits["val"], fingerprint, tokenizer.vocab_size,
                       source.describe(), tokenizer)


def _build(source, tokenizer, root: Path, final: Path) -> None:
    corpus = source.load()
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=".build-"))
    try:
        meta = {"dtype": np.dtype(_dtype(tokenizer.vocab_size)).name}
        for split, docs in (("train", corpus.train), ("val", corpus.val)):
            ids = [tokenizer.encode(d) for d in docs]
            arr = np.concatenate(ids).astype(meta["dtype"]) if ids else np.zeros(0, meta["dtype"])
            arr.tofile(tmp / f"{split}.bin")
            meta[split] = int(arr.size)
        if meta["train"] == 0:
            raise ConfigError(f"the corpus ({source.describe()}) is empty")
        (tmp / "meta.json").write_text(json.dumps(meta))
        os.replace(tmp, final)  # atomic: readers see the whole store or none of it
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
