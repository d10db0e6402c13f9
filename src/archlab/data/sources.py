"""Text sources (``data=<name>``): each yields the train and val documents plus a fingerprint.

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
from pathlib import Path

from archlab.config import ConfigError, DataConfig
from archlab.data.corpus import Corpus, find_files
from archlab.data.hf import HFSource  # stdlib-only; it imports datasets when it loads


class StdlibSource:
    @staticmethod
    def check(cfg: DataConfig) -> None:
        """Cheap up-front check (before any job starts): the stdlib is always there."""

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

    def fingerprint(self) -> str:
        h = hashlib.sha256(b"stdlib\0")
        for rel in self.files:
            h.update(f"{rel}\0{(self.root / rel).stat().st_size}\0".encode())
        return h.hexdigest()[:16]

    def _is_val(self, rel: str) -> bool:
        bucket = int.from_bytes(hashlib.sha256(rel.encode()).digest()[:4], "big") / 2**32
        return bucket < self.cfg.val_fraction

    def load(self) -> Corpus:
        corpus = Corpus([], [])
        for rel in self.files:
            (corpus.val if self._is_val(rel) else corpus.train).append(
                (self.root / rel).read_bytes()
            )
        return corpus

    def describe(self) -> str:
        return f"stdlib of Python at {self.root} ({len(self.files)} files)"


class TextSource:
    @staticmethod
    def check(cfg: DataConfig) -> None:
        find_files(cfg.path)

    def __init__(self, cfg: DataConfig):
        self.cfg = cfg
        self.files = find_files(cfg.path)

    def fingerprint(self) -> str:
        h = hashlib.sha256(b"text\0")
        for f in self.files:
            h.update(Path(f).read_bytes())
            h.update(b"\0")
        return h.hexdigest()[:16]

    def load(self) -> Corpus:
        corpus = Corpus([], [])
        for f in self.files:
            text = Path(f).read_bytes()
            cut = int(len(text) * (1 - self.cfg.val_fraction))
            corpus.train.append(text[:cut])
            corpus.val.append(text[cut:])
        return corpus

    def describe(self) -> str:
        return f"text: {len(self.files)} file(s) from {self.cfg.path}"


SOURCES = {"stdlib": StdlibSource, "text": TextSource, "hf": HFSource}


def make_source(cfg: DataConfig):
    return SOURCES[cfg.source](cfg)
