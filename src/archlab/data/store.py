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

import contextlib
import fcntl
import hashlib
import itertools
import json
import mmap
import multiprocessing
import os
import resource
import shutil
import sys
import tempfile
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from archlab.config import ConfigError, DataConfig, TokenizerConfig
from archlab.data.corpus import StreamState
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
            "val_bytes": m.get("val_bytes"),  # bits per byte across tokenizers (runs/compare)
            "unknown_tokens": m.get("unknown_tokens", 0),
            "dtype": m["dtype"],
            "build_sec": m.get("build_sec"),
        }


def _dtype(vocab_size: int):
    if vocab_size <= 2**8:
        return np.uint8
    return np.uint16 if vocab_size <= 2**16 else np.uint32


def store_key(cfg: DataConfig, fingerprint: str, tokenizer) -> str:
    cap = f"-max{cfg.max_tokens}" if getattr(cfg, "max_tokens", None) else ""
    return f"{cfg.source}-{fingerprint}-{tokenizer.identity()}-val{cfg.val_fraction:g}{cap}"


def _root(cfg: DataConfig) -> Path:
    return Path(os.path.expanduser(cfg.cache_dir)) / "tokens"


def corpus_fingerprint(cfg: DataConfig, source=None) -> str:
    """A corpus's identity: the content hash of its text (for a hub dataset: its name and
    params). Computed once per (paths, sizes, mtimes) and recorded under the cache, so later
    calls only stat the files; a touched but unchanged file costs one re-hash, no rebuild.
    Size and mtime only decide whether the recorded hash is still valid, never identity."""
    source = source if source is not None else make_source(cfg)
    stat = source.stat_key()
    if stat is None:
        return source.fingerprint()
    digest = hashlib.sha256(stat.encode()).hexdigest()[:32]
    index = Path(os.path.expanduser(cfg.cache_dir)) / "corpora" / f"{digest}.json"
    try:
        return json.loads(index.read_text())["fingerprint"]
    except (OSError, ValueError, KeyError):
        pass
    fingerprint = source.fingerprint()
    index.parent.mkdir(parents=True, exist_ok=True)
    tmp = index.with_name(f".{index.name}.{os.getpid()}")
    tmp.write_text(json.dumps({"fingerprint": fingerprint, "source": source.describe()}))
    os.replace(tmp, index)  # concurrent jobs write the same record; last one wins
    return fingerprint


def store_dir(cfg: DataConfig, tcfg: TokenizerConfig) -> Path:
    """Where the token store of this data and tokenizer config lives (built or not)."""
    tokenizer = make_tokenizer(tcfg)
    return _root(cfg) / store_key(cfg, corpus_fingerprint(cfg), tokenizer)


def load_tokens(cfg: DataConfig, tcfg: TokenizerConfig | None = None) -> TokenSplits:
    tcfg = tcfg if tcfg is not None else TokenizerConfig()
    source = make_source(cfg)
    tokenizer = make_tokenizer(tcfg)
    fingerprint = corpus_fingerprint(cfg, source)
    key = store_key(cfg, fingerprint, tokenizer)
    root = _root(cfg)
    final = root / key
    if not intact(final):
        root.mkdir(parents=True, exist_ok=True)
        with open(root / f"{key}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one job builds; the others wait here
            if not intact(final, discard=True):
                _build(
                    source,
                    tokenizer,
                    root,
                    final,
                    Build(cfg, tcfg, fingerprint, Build.default_workers(cfg, tokenizer)),
                )
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


@dataclass
class Build:
    """What a build needs besides the source and tokenizer."""

    cfg: DataConfig
    tcfg: TokenizerConfig
    fingerprint: str

    workers: int = 1

    @staticmethod
    def default_workers(cfg: DataConfig, tokenizer) -> int:
        """``data.workers``; unset: every core this process may use (Linux), except for the
        byte tokenizer (encoding is a copy: workers would only add pickling) and where
        ``sched_getaffinity`` is missing (macOS: workers are forked, and fork is fragile)."""
        if cfg.workers:
            return cfg.workers
        if tokenizer.name == "byte" or not hasattr(os, "sched_getaffinity"):
            return 1
        return len(os.sched_getaffinity(0))


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


def _build(source, tokenizer, root: Path, final: Path, build: Build) -> None:
    start = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=".build-"))
    try:
        _fit(source, tokenizer, build.tcfg)
        tokenizer.save(tmp)
        fitted = time.perf_counter()
        meta = {
            "dtype": np.dtype(_dtype(tokenizer.vocab_size)).name,
            "tokenizer": tokenizer.identity(),
            "tokenizer_vocab": tokenizer.vocab_size,
            "source": source.describe(),
            "fingerprint": build.fingerprint,
            "max_tokens": getattr(build.cfg, "max_tokens", None),
        }
        cpu = _cpu_sec()
        meta.update(write_splits(source, tokenizer, tmp, build, np.dtype(meta["dtype"])))
        meta["encode_cpu_sec"] = round(_cpu_sec() - cpu, 3)  # this process + its workers
        meta["fit_sec"] = round(fitted - start, 3)
        meta["build_sec"] = round(time.perf_counter() - start, 3)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        os.replace(tmp, final)  # atomic: readers see the whole store or none of it
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"archlab: tokenised {source.describe()} with {meta['tokenizer']} "
        f"(vocab {meta['tokenizer_vocab']}): {meta['train']:,} train + {meta['val']:,} val "
        f"tokens in {meta['build_sec']:.1f} s ({meta['workers']} worker(s))"
        + (f", {meta['unknown_tokens']:,} unknown" if meta["unknown_tokens"] else ""),
        file=sys.stderr,
        flush=True,
    )


def _cpu_sec() -> float:
    """CPU time of this process and its finished children (the pool is joined by then)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def _empty(source) -> ConfigError:
    return ConfigError(f"the corpus ({source.describe()}) is empty: its training split has no text")


def _fit(source, tokenizer, tcfg: TokenizerConfig) -> None:
    """Train the tokenizer (char, bpe) on the training split, or its first
    ``tokenizer.sample_bytes`` bytes (whole documents), streamed."""
    if not tokenizer.trains:
        tokenizer.fit(())
        return
    sample = getattr(tcfg, "sample_bytes", None)
    seen = [0]

    def train_docs():
        for split, doc in source.stream(StreamState(), tokenizer.cuts_ok()):
            if split != "train":
                continue
            if sample is not None and seen[0] >= sample:
                return
            seen[0] += len(doc)
            yield doc

    tokenizer.fit(train_docs())
    if not seen[0]:
        raise _empty(source)


# ------------------------------------------------------------------ streaming encode

BATCH_BYTES = 1 << 20  # documents are encoded in batches of about this much text
BATCH_DOCS = 1024
_worker: dict = {}


def _batches(items) -> Iterator[tuple[str, list[bytes]]]:
    """Consecutive documents of one split, grouped into batches."""
    split, docs, size = None, [], 0
    for s, doc in items:
        if docs and (s != split or size >= BATCH_BYTES or len(docs) >= BATCH_DOCS):
            yield split, docs
            docs, size = [], 0
        split = s
        docs.append(doc)
        size += len(doc)
    if docs:
        yield split, docs


def _encode_docs(tokenizer, docs: list[bytes], separate: bool, dtype) -> tuple[np.ndarray, int]:
    """One batch → its token ids (separators between its documents) and the unknown count."""
    before = tokenizer.unknown
    if hasattr(tokenizer, "encode_batch"):
        ids = tokenizer.encode_batch(docs)
    else:
        ids = [tokenizer.encode(d) for d in docs]
    if separate and len(ids) > 1:
        sep = tokenizer.separator()
        ids = [part for i, d in enumerate(ids) for part in ((sep, d) if i else (d,))]
    arr = np.concatenate(ids).astype(dtype) if ids else np.zeros(0, dtype)
    return arr, tokenizer.unknown - before


def _init_worker(tcfg: TokenizerConfig, store_dir: str, slots: Slots | None = None) -> None:
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one thread per worker process
    tokenizer = make_tokenizer(tcfg)
    tokenizer.load(Path(store_dir))
    _worker["tokenizer"] = tokenizer
    _worker["slots"] = slots


def _worker_encode(docs: list[bytes], separate: bool, dtype) -> tuple[np.ndarray, int]:
    return _encode_docs(_worker["tokenizer"], docs, separate, dtype)


def _worker_encode_slot(slot: int, lengths: list[int], separate: bool, dtype):
    """Encode the batch the parent put in input slot ``slot``; the ids go to its output slot
    (returned: their count) or, if they do not fit there, back by pickle (returned: the ids)."""
    slots = _worker["slots"]
    ids, unknown = _encode_docs(_worker["tokenizer"], slots.docs(slot, lengths), separate, dtype)
    return (len(ids) if slots.put_ids(slot, ids) else ids), unknown


class Slots:
    """Fixed buffers shared with the forked workers (one anonymous shared mapping, made once
    before the pool): the parent copies a batch's text into an input slot, the worker writes its
    ids into the matching output slot, the parent writes them to the store from there. So the
    building process allocates nothing per batch but the batch it is reading: no pickled
    documents or ids, whose coinciding copies (up to ~14 MiB with two workers) made its peak
    memory creep up with the number of batches. A batch or ids too large for a slot (a huge
    document) travel by pickle instead."""

    def __init__(self, n: int, in_bytes: int, dtype):
        self.in_bytes = in_bytes
        self.out_bytes = (in_bytes + BATCH_DOCS) * np.dtype(dtype).itemsize  # ids <= bytes
        self.dtype = np.dtype(dtype)
        self.buf = mmap.mmap(-1, n * (in_bytes + self.out_bytes))  # MAP_SHARED: forks share it

    def _base(self, slot: int) -> int:
        return slot * (self.in_bytes + self.out_bytes)

    def put_docs(self, slot: int, docs: list[bytes]) -> list[int] | None:
        """Copy the documents into the input slot; their lengths, or None if they do not fit."""
        lengths = [len(d) for d in docs]
        if sum(lengths) > self.in_bytes:
            return None
        at = self._base(slot)
        for d in docs:
            self.buf[at : at + len(d)] = d
            at += len(d)
        return lengths

    def docs(self, slot: int, lengths: list[int]) -> list[bytes]:
        at = self._base(slot)
        out = []
        for n in lengths:
            out.append(self.buf[at : at + n])
            at += n
        return out

    def put_ids(self, slot: int, ids: np.ndarray) -> bool:
        if ids.nbytes > self.out_bytes:
            return False
        self.ids(slot, len(ids))[:] = ids
        return True

    def ids(self, slot: int, count: int) -> np.ndarray:
        offset = self._base(slot) + self.in_bytes
        return np.frombuffer(self.buf, self.dtype, count, offset)


@contextlib.contextmanager
def _one_thread_per_worker():
    """HF tokenizers encode single-threaded while the store is built (here and in the forked
    workers, which inherit it: no fork-after-parallelism warning either)."""
    previous = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = previous


def _in_process(batches, tokenizer, separate: bool, dtype):
    for split, docs in batches:
        yield (split, len(docs), _n_bytes(docs), *_encode_docs(tokenizer, docs, separate, dtype))


def _n_bytes(docs: list[bytes]) -> int:
    return sum(map(len, docs))


def _in_pool(batches, build: Build, store_dir: Path, separate: bool, dtype):
    """Batches encoded by ``build.workers`` processes, results in order; at most two batches
    per worker are in flight, each in its own pair of shared slots (:class:`Slots`), so memory
    stays bounded whatever the corpus size. A yielded array may be a view of a slot: it is
    valid until the next one is asked for."""
    # fork, not spawn: spawn re-imports the caller's __main__ (a script without a main guard
    # would build again and wait on our lock). The children use no inherited threads: they
    # only run numpy and the tokenizer, single-threaded.
    ctx = multiprocessing.get_context("fork")
    n_slots = 2 * build.workers
    slots = Slots(n_slots, 2 * BATCH_BYTES, dtype)  # a batch is < BATCH_BYTES + one document
    pool = ProcessPoolExecutor(
        build.workers, ctx, initializer=_init_worker, initargs=(build.tcfg, str(store_dir), slots)
    )
    free, window = deque(range(n_slots)), deque()

    def submit(docs: list[bytes]):
        slot = free.popleft()
        lengths = slots.put_docs(slot, docs)
        if lengths is None:
            return slot, pool.submit(_worker_encode, docs, separate, dtype)
        return slot, pool.submit(_worker_encode_slot, slot, lengths, separate, dtype)

    def oldest():
        split, n, n_bytes, slot, future = window.popleft()
        ids, unknown = future.result()
        if isinstance(ids, int):
            ids = slots.ids(slot, ids)
        yield split, n, n_bytes, ids, unknown
        free.append(slot)  # the consumer is done with the view: the slot may be refilled

    try:
        for split, docs in batches:
            window.append((split, len(docs), _n_bytes(docs), *submit(docs)))
            if len(window) >= n_slots:
                yield from oldest()
        while window:
            yield from oldest()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _encoded(source, tokenizer, build: Build, store_dir: Path, state: StreamState, dtype):
    """(split, documents, text bytes, token ids, unknown) per batch: in this process when the corpus is
    one batch or ``data.workers=1``, else in a pool of worker processes."""
    batches = _batches(source.stream(state, tokenizer.cuts_ok()))
    first, size = [], 0
    for batch in batches:  # look ahead: is there more than one batch of text?
        first.append(batch)
        size += sum(map(len, batch[1]))
        if size > BATCH_BYTES:
            break
    batches = itertools.chain(first, batches)
    daemon = multiprocessing.current_process().daemon  # a daemon may not have children
    if size <= BATCH_BYTES or build.workers == 1 or daemon:
        return _in_process(batches, tokenizer, source.separate_docs, dtype), 1
    return _in_pool(batches, build, store_dir, source.separate_docs, dtype), build.workers


def write_splits(source, tokenizer, store_dir: Path, build: Build, dtype) -> dict:
    """Stream the corpus through the tokenizer into ``train.bin`` / ``val.bin``, stopping the
    training split at ``data.max_tokens``. Returns the store's counts for meta.json;
    ``val_bytes`` is the validation documents' text in bytes (separators not counted), the
    same for every tokenizer, None if the val split was cut in tokens (a token cap)."""
    state = StreamState()
    cap = getattr(build.cfg, "max_tokens", None)
    vf = build.cfg.val_fraction
    sep = tokenizer.separator().astype(dtype) if source.separate_docs else None
    counts = {"train": 0, "val": 0, "train_docs": 0, "val_docs": 0, "unknown_tokens": 0}
    val_bytes: int | None = 0
    encoded, workers = _encoded(source, tokenizer, build, store_dir, state, dtype)
    with (
        _one_thread_per_worker(),
        open(store_dir / "train.bin", "wb") as out_train,
        open(store_dir / "val.bin", "wb") as out_val,
    ):
        files = {"train": out_train, "val": out_val}
        # mixed splits (hashed): val stops at its share of the cap, in stream order
        val_cap = -(-cap * vf // (1 - vf)) if cap is not None and state.mixed else None
        for split, n_docs, n_bytes, ids, unknown in encoded:
            if split == "train" and state.train_full:
                continue  # batches read ahead past the cap: what is kept never depends on it
            if sep is not None and counts[f"{split}_docs"]:
                ids = np.concatenate([sep, ids])
            limit = cap if split == "train" else val_cap
            if limit is not None:
                kept = ids[: int(limit) - counts[split]]
                if split == "val" and len(kept) < len(ids):
                    val_bytes = None  # cut inside a batch: these tokens cover part of its bytes
                ids = kept
            if split == "val" and val_bytes is not None:
                val_bytes += n_bytes
                state.train_full |= split == "train" and counts["train"] + len(ids) >= cap
            ids.tofile(files[split])
            counts[split] += len(ids)
            counts[f"{split}_docs"] += n_docs
            counts["unknown_tokens"] += unknown  # char: characters unseen in train
            if val_cap is not None and state.train_full and counts["val"] >= val_cap:
                state.done = True
                break
    if not counts["train"]:
        raise _empty(source)
    return {**counts, "val_bytes": val_bytes, "workers": workers}


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
