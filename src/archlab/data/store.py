"""Token store: each split tokenised once into a memory-mapped array, keyed by
source fingerprint + tokenizer identity (with its vocab/training params) + split params.
Builds are atomic (written to a temp dir, renamed into place) and serialised by a file lock,
so parallel sweep jobs never see a partial cache: one builds, the others wait and reuse it.
A failed build (bad input) leaves nothing behind but the empty lock file.

A trained tokenizer (char vocabulary, BPE merges) lives in the store directory with the
tokens, so every arm and seed using that store shares it; :meth:`TokenSplits.save_tokenizer`
copies it into a run dir for decoding.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from archlab.config import ConfigError, DataConfig, TokenizerConfig
from archlab.data.sources import make_source
from archlab.data.tokenizers import make_tokenizer, padded_vocab


@dataclass
class TokenSplits:
    train: np.ndarray  # memmap of token ids
    val: np.ndarray
    fingerprint: str
    vocab_size: int  # the tokenizer's true vocabulary size
    description: str
    tokenizer: object
    store_dir: Path
    meta: dict

    @property
    def model_vocab_size(self) -> int:
        """The model's vocab: the tokenizer's, padded to a multiple of 64 for speed."""
        return padded_vocab(self.vocab_size)

    def save_tokenizer(self, run_dir: str | Path) -> None:
        """Copy the tokenizer's files (tokenizer.json, char_vocab.json) into the run dir."""
        for name in self.tokenizer.files:
            shutil.copyfile(self.store_dir / name, Path(run_dir) / name)

    def info(self) -> dict:
        """What the run record says about its data (config.yaml ``data_info``)."""
        m = self.meta
        return {
            "fingerprint": self.fingerprint,
            "corpus": self.description,
            "store": self.store_dir.name,
            "tokenizer": m.get("tokenizer", "byte"),
            "tokenizer_vocab": self.vocab_size,
            "model_vocab": self.model_vocab_size,
            "train_tokens": len(self.train),
            "val_tokens": len(self.val),
            "train_docs": m.get("train_docs"),
            "val_docs": m.get("val_docs"),
            "unknown_tokens": m.get("unknown_tokens", 0),
            "dtype": m["dtype"],
            "build_sec": m.get("build_sec"),
        }


def _dtype(vocab_size: int):
    return np.uint16 if vocab_size <= 2**16 else np.uint32


def store_key(cfg: DataConfig, fingerprint: str, tokenizer) -> str:
    return f"{cfg.source}-{fingerprint}-{tokenizer.identity()}-val{cfg.val_fraction:g}"


def load_tokens(cfg: DataConfig, tcfg: TokenizerConfig | None = None) -> TokenSplits:
    tcfg = tcfg if tcfg is not None else TokenizerConfig()
    source = make_source(cfg)
    tokenizer = make_tokenizer(tcfg)
    fingerprint = source.fingerprint()
    key = store_key(cfg, fingerprint, tokenizer)
    root = Path(os.path.expanduser(cfg.cache_dir)) / "tokens"
    final = root / key
    if not intact(final):
        root.mkdir(parents=True, exist_ok=True)
        with open(root / f"{key}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one job builds; the others wait here
            if not intact(final, discard=True):
                _build(source, tokenizer, root, final)
    meta = json.loads((final / "meta.json").read_text())
    tokenizer.load(final)
    dtype = np.dtype(meta["dtype"])
    splits = {
        s: np.memmap(final / f"{s}.bin", dtype=dtype, mode="r") if meta[s] else np.zeros(0, dtype)
        for s in ("train", "val")
    }
    vocab = meta.get("tokenizer_vocab", 256)  # stores built before tokenizers were byte-only
    return TokenSplits(
        splits["train"],
        splits["val"],
        fingerprint,
        vocab,
        source.describe(),
        tokenizer,
        final,
        meta,
    )


def intact(store: Path, discard: bool = False) -> bool:
    """True if ``store`` holds meta.json and every split file has the size it records. A
    damaged store (a truncated ``train.bin``) is removed when ``discard`` (under the build
    lock), with one warning, so it is rebuilt instead of trained on silently."""
    try:
        meta = json.loads((store / "meta.json").read_text())
        size = np.dtype(meta["dtype"]).itemsize
        ok = all(
            (store / f"{s}.bin").stat().st_size == meta[s] * size if meta[s] else True
            for s in ("train", "val")
        )
    except (OSError, ValueError, KeyError, TypeError):
        ok = False
    if not ok and discard and store.exists():
        print(
            f"archlab: warning: token store {store} is damaged (a split file's size differs "
            "from meta.json); rebuilding it",
            file=sys.stderr,
            flush=True,
        )
        shutil.rmtree(store, ignore_errors=True)
    return ok


def _encode_split(tokenizer, docs: list[bytes], separate: bool, dtype) -> np.ndarray:
    if hasattr(tokenizer, "encode_batch"):
        ids = tokenizer.encode_batch(docs)
    else:
        ids = [tokenizer.encode(d) for d in docs]
    if separate and len(ids) > 1:
        sep = tokenizer.separator()
        ids = [part for i, d in enumerate(ids) for part in ((sep, d) if i else (d,))]
    return np.concatenate(ids).astype(dtype) if ids else np.zeros(0, dtype)


def _build(source, tokenizer, root: Path, final: Path) -> None:
    start = time.perf_counter()
    corpus = source.load()
    if not any(corpus.train):
        raise ConfigError(
            f"the corpus ({source.describe()}) is empty: its training split has no text"
        )
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=".build-"))
    try:
        tokenizer.fit(corpus.train)
        tokenizer.save(tmp)
        vocab = tokenizer.vocab_size
        meta = {
            "dtype": np.dtype(_dtype(vocab)).name,
            "tokenizer": tokenizer.identity(),
            "tokenizer_vocab": vocab,
            "source": source.describe(),
            "train_docs": len(corpus.train),
            "val_docs": len(corpus.val),
        }
        for split, docs in (("train", corpus.train), ("val", corpus.val)):
            arr = _encode_split(tokenizer, docs, corpus.separate_docs, meta["dtype"])
            arr.tofile(tmp / f"{split}.bin")
            meta[split] = int(arr.size)
        meta["unknown_tokens"] = int(tokenizer.unknown)  # char: characters unseen in train
        meta["build_sec"] = round(time.perf_counter() - start, 3)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        os.replace(tmp, final)  # atomic: readers see the whole store or none of it
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"archlab: tokenised {source.describe()} with {meta['tokenizer']} "
        f"(vocab {vocab}): {meta['train']:,} train + {meta['val']:,} val tokens "
        f"in {meta['build_sec']:.1f} s"
        + (f", {meta['unknown_tokens']:,} unknown" if meta["unknown_tokens"] else ""),
        file=sys.stderr,
        flush=True,
    )


def data_regime(
    train_tokens: int, max_steps: int, batch_size: int, block_size: int, single_epoch: bool
) -> dict:
    """Single epoch or repeated data? Known before the first step; warns (one line) when a run
    meant to be single-epoch (``data.single_epoch=true``) would repeat its training split."""
    planned = max_steps * batch_size * block_size
    epochs = planned / train_tokens if train_tokens else float("inf")
    regime = {
        "train_tokens": int(train_tokens),
        "planned_tokens": planned,
        "planned_epochs": round(epochs, 4),
        "repeats_data": epochs > 1,
    }
    if single_epoch and epochs > 1:
        print(
            f"archlab train: warning: data.single_epoch=true but this run repeats data: "
            f"{planned:,} tokens (train.max_steps × batch × block_size) = {epochs:.2f} epochs "
            f"of the {train_tokens:,}-token training split; use more data or fewer steps",
            file=sys.stderr,
            flush=True,
        )
    return regime
