"""Tokenizers (``tokenizer=<name>``): bytes of documents → token ids.

``byte``        one token per UTF-8 byte: vocab 256, nothing to train, nothing unknown (default).
``char``        one token per Unicode character seen in the training split, plus ``<unk>`` (id 0)
                for characters that only appear elsewhere (counted and recorded). Needs UTF-8.
``bpe``         byte-level BPE trained with HF ``tokenizers`` on the training split
                (``tokenizer.vocab_size``, ``tokenizer.min_frequency``); ``<|endoftext|>``
                separates documents. Trained once per token store and reused by every arm.
``pretrained``  any local Hugging Face tokenizer directory (``tokenizer.path``), e.g. GPT-2's,
                for use with loaded weights.

Every tokenizer has an ``identity()`` (part of the token store key), ``fit(docs)`` (build the
vocabulary from the training split; a no-op for byte/pretrained), ``save(dir)`` / ``load(dir)``
(the files written next to the token store and copied into the run dir so generation can
decode) and ``vocab_size`` (the true size; the model pads it, see :func:`padded_vocab`).
The HF libraries are imported only inside the tokenizers that need them.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from archlab.config import ConfigError, TokenizerConfig
from archlab.errors import describe

VOCAB_MULTIPLE = 64  # the model's embedding/head rows are padded to a multiple of this
EOT = "<|endoftext|>"


def padded_vocab(vocab_size: int, multiple: int = VOCAB_MULTIPLE) -> int:
    """The model's vocab: the tokenizer's size rounded up to a multiple of 64 (256 stays 256)."""
    return -(-vocab_size // multiple) * multiple


def check_checkpoint_vocab(checkpoint_vocab: int, tokenizer_vocab: int, what: str) -> None:
    """A checkpoint's embedding rows must cover the tokenizer (else ids would index past it)
    and must not be a different tokenizer's padded size either."""
    if checkpoint_vocab < tokenizer_vocab or checkpoint_vocab not in (
        tokenizer_vocab,
        padded_vocab(tokenizer_vocab),
    ):
        raise ConfigError(
            f"{what} has a vocabulary of {checkpoint_vocab} tokens but the tokenizer has "
            f"{tokenizer_vocab} (padded: {padded_vocab(tokenizer_vocab)}): use the tokenizer the "
            "checkpoint was trained with (tokenizer=pretrained tokenizer.path=<its directory>)"
        )


def _no_vocab_size(tcfg: TokenizerConfig) -> None:
    if tcfg.vocab_size is not None:
        raise ConfigError(
            f"tokenizer.vocab_size={tcfg.vocab_size} is only for tokenizer=bpe; "
            f"tokenizer={tcfg.name} sets its own size: drop tokenizer.vocab_size"
        )


class ByteTokenizer:
    """One token per UTF-8 byte: vocab 256, nothing to train, nothing unknown."""

    name = "byte"
    vocab_size = 256
    files: tuple[str, ...] = ()

    def __init__(self, tcfg: TokenizerConfig | None = None):
        self.unknown = 0

    @staticmethod
    def check(tcfg: TokenizerConfig) -> None:
        _no_vocab_size(tcfg)

    def identity(self) -> str:
        return "byte"

    def fit(self, docs: list[bytes]) -> None:
        pass

    def save(self, directory: Path) -> None:
        pass

    def load(self, directory: Path) -> None:
        pass

    def encode(self, data: bytes) -> np.ndarray:
        return np.frombuffer(data, dtype=np.uint8)

    def separator(self) -> np.ndarray:
        return self.encode(b"\n\n")

    def decode(self, ids) -> str:
        return bytes(int(i) for i in ids if 0 <= int(i) < 256).decode("utf-8", errors="replace")


def _utf8(doc: bytes, where: str = "a document") -> str:
    try:
        return doc.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"tokenizer=char needs UTF-8 text, but {where} has a non-UTF-8 byte "
            f"(0x{doc[e.start]:02x} at byte {e.start}): use tokenizer=byte or tokenizer=bpe"
        ) from None


class CharTokenizer:
    """Characters of the training split (+ ``<unk>`` = id 0 for characters seen only elsewhere)."""

    name = "char"
    files = ("char_vocab.json",)

    def __init__(self, tcfg: TokenizerConfig | None = None):
        self.chars: list[str] = []
        self.unknown = 0  # characters encoded as <unk> so far

    @staticmethod
    def check(tcfg: TokenizerConfig) -> None:
        _no_vocab_size(tcfg)

    @property
    def vocab_size(self) -> int:
        return 1 + len(self.chars)

    def identity(self) -> str:
        return "char"

    def _set(self, chars: list[str]) -> None:
        self.chars = chars
        self._codes = np.array([ord(c) for c in chars], dtype=np.int64)  # sorted

    def fit(self, docs: list[bytes]) -> None:
        seen: set[str] = {"\n"}  # the document separator is always encodable
        for i, doc in enumerate(docs):
            seen.update(_utf8(doc, f"training document {i}"))
        self._set(sorted(seen))

    def save(self, directory: Path) -> None:
        (Path(directory) / "char_vocab.json").write_text(
            json.dumps({"unk": "<unk>", "chars": self.chars}, ensure_ascii=False)
        )

    def load(self, directory: Path) -> None:
        self._set(json.loads((Path(directory) / "char_vocab.json").read_text())["chars"])

    def encode(self, data: bytes | str) -> np.ndarray:
        text = data if isinstance(data, str) else _utf8(data)
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
        pos = np.searchsorted(self._codes, codes)
        pos = np.minimum(pos, len(self._codes) - 1)
        known = self._codes[pos] == codes
        self.unknown += int((~known).sum())
        return np.where(known, pos + 1, 0)

    def separator(self) -> np.ndarray:
        return self.encode("\n\n")

    def decode(self, ids) -> str:
        n = len(self.chars)
        return "".join(self.chars[i - 1] if 1 <= i <= n else "\ufffd" for i in map(int, ids))


class _HFTokenizer:
    """Shared by bpe and pretrained: a ``tokenizers.Tokenizer`` saved as tokenizer.json."""

    files = ("tokenizer.json",)

    def __init__(self, tcfg: TokenizerConfig):
        self.tcfg = tcfg
        self.tok = None
        self.unknown = 0

    @property
    def vocab_size(self) -> int:
        return self.tok.get_vocab_size(with_added_tokens=True)

    def save(self, directory: Path) -> None:
        self.tok.save(str(Path(directory) / "tokenizer.json"))

    def load(self, directory: Path) -> None:
        from tokenizers import Tokenizer  # the hf extra: only for bpe / pretrained

        self.tok = Tokenizer.from_file(str(Path(directory) / "tokenizer.json"))

    def encode(self, data: bytes | str) -> np.ndarray:
        text = data if isinstance(data, str) else data.decode("utf-8", errors="replace")
        return np.asarray(self.tok.encode(text, add_special_tokens=False).ids, dtype=np.int64)

    def encode_batch(self, docs: list[bytes]) -> list[np.ndarray]:
        texts = [d.decode("utf-8", errors="replace") for d in docs]
        out = self.tok.encode_batch(texts, add_special_tokens=False)
        return [np.asarray(e.ids, dtype=np.int64) for e in out]

    def separator(self) -> np.ndarray:
        for special in (EOT, "<|end_of_text|>", "</s>", "<eos>"):
            i = self.tok.token_to_id(special)
            if i is not None:
                return np.array([i], dtype=np.int64)
        return self.encode("\n\n")

    def decode(self, ids) -> str:
        n = self.vocab_size
        return self.tok.decode([int(i) for i in ids if 0 <= int(i) < n], skip_special_tokens=False)


class BPETokenizer(_HFTokenizer):
    """Byte-level BPE trained on the training split (GPT-2 style pre-tokenisation)."""

    name = "bpe"

    @staticmethod
    def check(tcfg: TokenizerConfig) -> None:
        if tcfg.vocab_size is None or tcfg.vocab_size < 258:
            raise ConfigError(
                f"tokenizer=bpe needs tokenizer.vocab_size >= 258 (256 bytes + <|endoftext|> + "
                f"at least one merge), got {tcfg.vocab_size}: e.g. tokenizer.vocab_size=2048"
            )
        if tcfg.vocab_size > 2**32 - 1:
            raise ConfigError(f"tokenizer.vocab_size={tcfg.vocab_size} is too large")
        if tcfg.min_frequency < 1:
            raise ConfigError(f"tokenizer.min_frequency={tcfg.min_frequency} must be >= 1")
        if tcfg.path is not None:
            raise ConfigError("tokenizer.path is only for tokenizer=pretrained: drop it for bpe")

    def identity(self) -> str:
        return f"bpe{self.tcfg.vocab_size}-mf{self.tcfg.min_frequency}"

    def fit(self, docs: list[bytes]) -> None:
        from tokenizers import (  # the hf extra: only when training BPE
            Tokenizer,
            decoders,
            models,
            pre_tokenizers,
            trainers,
        )

        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=self.tcfg.vocab_size,
            min_frequency=self.tcfg.min_frequency,
            special_tokens=[EOT],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        texts = (d.decode("utf-8", errors="replace") for d in docs)
        tok.train_from_iterator(texts, trainer=trainer, length=len(docs))
        self.tok = tok


def _tokenizer_dir(tcfg: TokenizerConfig) -> Path:
    return Path(os.path.expanduser(tcfg.path or ""))


class PretrainedTokenizer(_HFTokenizer):
    """A local Hugging Face tokenizer directory (tokenizer.json, or vocab/merges via
    transformers); nothing is trained."""

    name = "pretrained"

    @staticmethod
    def check(tcfg: TokenizerConfig) -> None:
        _no_vocab_size(tcfg)
        d = _tokenizer_dir(tcfg)
        if not tcfg.path or not d.is_dir():
            raise ConfigError(
                f"tokenizer=pretrained needs tokenizer.path=<a local Hugging Face tokenizer "
                f"directory>, got {tcfg.path!r} (not a directory)"
            )
        if not any(
            (d / f).is_file() for f in ("tokenizer.json", "vocab.json", "tokenizer_config.json")
        ):
            raise ConfigError(
                f"tokenizer.path={tcfg.path!r} holds no tokenizer.json, vocab.json or "
                "tokenizer_config.json: point it at a saved Hugging Face tokenizer"
            )

    def _open(self):
        d = _tokenizer_dir(self.tcfg)
        try:
            if (d / "tokenizer.json").is_file():
                from tokenizers import Tokenizer  # the hf extra: only for bpe / pretrained

                return Tokenizer.from_file(str(d / "tokenizer.json"))
            from transformers import AutoTokenizer  # slow-format directories (vocab + merges)

            return AutoTokenizer.from_pretrained(str(d), local_files_only=True).backend_tokenizer
        except ConfigError:
            raise
        except Exception as e:
            raise ConfigError(
                f"tokenizer.path={self.tcfg.path!r} could not be loaded as a Hugging Face "
                f"tokenizer ({describe(e)})"
            ) from None

    def identity(self) -> str:
        if self.tok is None:
            self.tok = self._open()
        return "pretrained-" + hashlib.sha256(self.tok.to_str().encode()).hexdigest()[:12]

    def fit(self, docs: list[bytes]) -> None:
        if self.tok is None:
            self.tok = self._open()


TOKENIZERS = {
    "byte": ByteTokenizer,
    "char": CharTokenizer,
    "bpe": BPETokenizer,
    "pretrained": PretrainedTokenizer,
}


def make_tokenizer(tcfg: TokenizerConfig | str):
    if isinstance(tcfg, str):
        tcfg = TokenizerConfig(name=tcfg)
    return TOKENIZERS[tcfg.name](tcfg)


def load_run_tokenizer(run_dir: str | Path):
    """The tokenizer a run trained with, from its run dir (config.yaml + tokenizer files)."""
    run_dir = Path(run_dir)
    node = OmegaConf.load(run_dir / "config.yaml").get("tokenizer") or {"name": "byte"}
    tcfg = TokenizerConfig(**OmegaConf.to_container(node))
    tok = make_tokenizer(tcfg)
    tok.load(run_dir)
    return tok
