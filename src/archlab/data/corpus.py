"""What every source yields: the train and val documents (bytes), and how to find files."""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass

from archlab.config import ConfigError


@dataclass
class Corpus:
    train: list[bytes]
    val: list[bytes]
    separate_docs: bool = False  # put the tokenizer's separator (e.g. <|endoftext|>) between docs


def find_files(path: str | None, key: str = "data.path") -> list[str]:
    pattern = os.path.expanduser(path or "")
    found = glob.glob(pattern, recursive=True) if glob.has_magic(pattern) else [pattern]
    files = sorted(f for f in found if os.path.isfile(f))
    if not files:
        raise ConfigError(f"{key}={path!r} matches no file: give an existing file or glob")
    return files
