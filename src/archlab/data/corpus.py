"""What every source yields, and the helpers sources share.

A source streams ``(split, document)`` pairs (``split`` is "train" or "val", a document is bytes)
in the order they go into the token store; nothing holds the whole corpus. Large files are cut
into pieces at places where no tokenizer that allows it (byte, char, byte-level BPE) would
tokenise differently, so the pieces tokenise to exactly the tokens of the whole file, and one
file is spread over many workers.
"""

from __future__ import annotations

import glob
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

from archlab.config import ConfigError, DataConfig

PIECE_BYTES = 1 << 18  # a large file is cut into pieces of about this size
_VISIBLE = frozenset(range(0x21, 0x7F))  # ASCII, not whitespace
_LETTERS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


@dataclass
class Corpus:
    train: list[bytes]
    val: list[bytes]
    separate_docs: bool = False  # put the tokenizer's separator (e.g. <|endoftext|>) between docs


@dataclass
class StreamState:
    """Shared by the builder and a source's stream: the builder sets ``train_full`` once the
    training split holds ``data.max_tokens`` tokens (the source stops reading training
    documents) and ``done`` when it needs nothing more."""

    train_full: bool = False
    done: bool = False
    mixed: bool = False  # set by a source whose val documents come between train documents


def find_files(path: str | None, key: str = "data.path") -> list[str]:
    pattern = os.path.expanduser(path or "")
    found = glob.glob(pattern, recursive=True) if glob.has_magic(pattern) else [pattern]
    files = sorted(f for f in found if os.path.isfile(f))
    if not files:
        raise ConfigError(f"{key}={path!r} matches no file: give an existing file or glob")
    return files


def check_caps(cfg: DataConfig) -> None:
    """The corpus-size knobs every source shares."""
    for key in ("max_tokens", "max_docs", "workers"):
        value = getattr(cfg, key, None)
        if value is not None and value <= 0:
            raise ConfigError(f"data.{key}={value} must be positive (or null: no cap / all cores)")


def file_stats(files: list[str]) -> str:
    """Paths, sizes and mtimes: whether a recorded content hash is still valid (never identity)."""
    parts = []
    for f in files:
        st = os.stat(f)
        parts.append(f"{os.path.abspath(f)}\0{st.st_size}\0{st.st_mtime_ns}")
    return "\n".join(parts)


def hash_file(h, path: str | os.PathLike) -> None:
    """Feed a file into a hash in 1 MiB blocks (bounded memory)."""
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)


def val_bucket(doc: bytes) -> float:
    return int.from_bytes(hashlib.sha256(doc).digest()[:4], "big") / 2**32


def _last_cut(buf: bytes) -> int:
    """The last offset where ``buf`` may be cut (0: none). Preferably after a line end with a
    visible ASCII character on both sides; else before a space followed by an ASCII letter
    (for files without such line ends, e.g. CRLF). A byte-level BPE pre-tokeniser (GPT-2's
    pattern) puts a token boundary there in the whole text and in both pieces alike."""
    p = len(buf) - 1
    while (p := buf.rfind(b"\n", 1, p)) > 0:
        if buf[p - 1] in _VISIBLE and buf[p + 1] in _VISIBLE:
            return p + 1
    p = len(buf) - 1
    while (p := buf.rfind(b" ", 1, p)) > 0:
        if buf[p - 1] in _VISIBLE and buf[p + 1] in _LETTERS:
            return p
    return 0


def file_pieces(path: str, start: int, stop: int, cut: bool) -> Iterator[bytes]:
    """Bytes ``start:stop`` of a file: one piece (``cut=False``), or pieces of about
    :data:`PIECE_BYTES` cut by :func:`_last_cut` (a piece grows until it has a cut)."""
    with open(path, "rb") as fh:
        fh.seek(start)
        left, buf = stop - start, b""
        while left > 0:
            block = fh.read(min(PIECE_BYTES, left))
            if not block:
                break
            left -= len(block)
            buf += block
            if cut and left > 0 and len(buf) >= PIECE_BYTES:
                at = _last_cut(buf)
                if at:
                    yield buf[:at]
                    buf = buf[at:]
        yield buf


def hashed_split(
    docs, val_fraction: float, state: StreamState | None = None
) -> Iterator[tuple[str, bytes]]:
    """Deterministic train/val split of documents (no validation split in the source): a
    document is val when a hash of its bytes falls under ``val_fraction``. Documents wait only
    until both splits have one; if the source ends first (too few documents), the last
    ``val_fraction`` of the joined text is val."""
    pending: list[tuple[str, bytes]] = []
    seen: set[str] = set()
    if state is not None:
        state.mixed = True
    for d in docs:
        if state is not None and state.done:
            return
        split = "val" if val_bucket(d) < val_fraction else "train"
        if len(seen) == 2:
            yield split, d
            continue
        pending.append((split, d))
        seen.add(split)
        if len(seen) == 2:
            yield from pending
            pending = []
    if pending:
        text = b"\n\n".join(d for _, d in pending)
        cut = int(len(text) * (1 - val_fraction))
        yield "train", text[:cut]
        yield "val", text[cut:]


def split_documents(docs: list[bytes], val_fraction: float) -> Corpus:
    """The split of :func:`hashed_split`, as lists (small corpora, tests)."""
    corpus = Corpus([], [], separate_docs=True)
    for split, d in hashed_split(docs, val_fraction):
        (corpus.val if split == "val" else corpus.train).append(d)
    return corpus
