"""Text sources (``data=<name>``): each streams its train and val documents (``stream``), and
knows its identity (``fingerprint``: a content hash, computed only when ``stat_key`` — paths,
sizes, mtimes — changed; see :func:`archlab.data.store.corpus_fingerprint`).

``stdlib``  the Python source files of the running interpreter's standard library (every
            machine with Python has them), sorted and split by file: a file goes to val when a
            hash of its relative path falls under ``val_fraction``, so the split is stable.
``text``    local text files (a path or a glob); the last ``val_fraction`` of each file is val.
``hf``      any Hugging Face dataset through ``datasets.load_dataset``: a hub dataset
            (``data.dataset`` [+ ``data.subset``, ``data.revision``]) or local ``data.data_files``
            (txt / json / jsonl / parquet / csv), see :mod:`archlab.data.hf`. Presets
            (``data=tinystories`` …) are just conf/data/*.yaml files filling these fields.
"""

from __future__ import annotations

import hashlib
import os
import sysconfig
from collections.abc import Iterator
from pathlib import Path

from archlab.config import ConfigError, DataConfig
from archlab.data.corpus import (
    StreamState,
    check_caps,
    file_pieces,
    file_stats,
    find_files,
    hash_file,
)
from archlab.data.hf import HFSource  # stdlib-only; it imports datasets when it loads


class StdlibSource:
    separate_docs = False

    @staticmethod
    def check(cfg: DataConfig) -> None:
        """Cheap up-front check (before any job starts): the stdlib is always there."""
        check_caps(cfg)

    def __init__(self, cfg: DataConfig):
        self.cfg = cfg
        self.root = Path(sysconfig.get_paths()["stdlib"])
        files = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = sorted(d for d in dirnames if d not in ("site-packages", "__pycache__"))
            files += [os.path.join(dirpath, f) for f in filenames if f.endswith(".py")]
        self.files = sorted(Path(f).relative_to(self.root).as_posix() for f in files)
        if not self.files:
            raise ConfigError(f"data=stdlib found no .py files under {self.root}")

    def stat_key(self) -> str:
        return "stdlib\n" + file_stats([str(self.root / rel) for rel in self.files])

    def fingerprint(self) -> str:
        """Content hash: every file's relative path, size and bytes."""
        h = hashlib.sha256(b"stdlib-content\0")
        for rel in self.files:
            h.update(f"{rel}\0{(self.root / rel).stat().st_size}\0".encode())
            hash_file(h, self.root / rel)
        return h.hexdigest()[:16]

    def _is_val(self, rel: str) -> bool:
        bucket = int.from_bytes(hashlib.sha256(rel.encode()).digest()[:4], "big") / 2**32
        return bucket < self.cfg.val_fraction

    def stream(self, state: StreamState, cut: bool = True) -> Iterator[tuple[str, bytes]]:
        for rel in self.files:
            split = "val" if self._is_val(rel) else "train"
            if split == "val" or not state.train_full:
                yield split, (self.root / rel).read_bytes()

    def describe(self) -> str:
        return f"stdlib of Python at {self.root} ({len(self.files)} files)"


class TextSource:
    """Local text files; the last ``val_fraction`` of each file is val. A file is streamed in
    pieces (see :func:`~archlab.data.corpus.file_pieces`) that tokenise like the whole file."""

    separate_docs = False

    @staticmethod
    def check(cfg: DataConfig) -> None:
        check_caps(cfg)
        find_files(cfg.path)

    def __init__(self, cfg: DataConfig):
        self.cfg = cfg
        self.files = find_files(cfg.path)

    def stat_key(self) -> str:
        return "text\n" + file_stats(self.files)

    def fingerprint(self) -> str:
        h = hashlib.sha256(b"text\0")
        for f in self.files:
            hash_file(h, f)
            h.update(b"\0")
        return h.hexdigest()[:16]

    def stream(self, state: StreamState, cut: bool = True) -> Iterator[tuple[str, bytes]]:
        for f in self.files:
            size = os.path.getsize(f)
            at = int(size * (1 - self.cfg.val_fraction))
            for piece in file_pieces(f, 0, at, cut) if not state.train_full else ():
                yield "train", piece
                if state.train_full:
                    break
            for piece in file_pieces(f, at, size, cut):
                yield "val", piece

    def describe(self) -> str:
        return f"text: {len(self.files)} file(s) from {self.cfg.path}"


SOURCES = {"stdlib": StdlibSource, "text": TextSource, "hf": HFSource}


def make_source(cfg: DataConfig):
    check_caps(cfg)
    return SOURCES[cfg.source](cfg)
