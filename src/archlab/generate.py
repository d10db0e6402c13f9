"""``archlab generate ckpt=<run dir | .ckpt> | hf=<local HF dir>  prompt="..." [key=value …]``

Keys: max_tokens (100), temperature (0.8; 0 = greedy), top_k (0 = off), top_p (1.0 = off),
seed (0), n (1 sample). Decoding uses the model's KV cache (``archlab.model.cache``).

``ckpt=`` is an archlab checkpoint (``train/checkpoint.py``: loaded with ``weights_only=True``
by :func:`archlab.train.checkpoint.load`), or a run directory (its ``checkpoints/last.ckpt``).
The model config is the one stored in the checkpoint; the tokenizer is the one the run trained
with (``config.yaml`` + its saved files in the run directory, ``load_run_tokenizer``). For
``hf=`` the directory's HF tokenizer.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import torch
from omegaconf import OmegaConf

from archlab.config import ConfigError, ModelConfig
from archlab.data.tokenizers import load_run_tokenizer, make_tokenizer
from archlab.hf import from_hf
from archlab.model import Transformer
from archlab.train import checkpoint
from archlab.train.checkpoint import CKPT_DIR
from archlab.validate import validate_model

DEFAULTS = {
    "ckpt": None,
    "hf": None,
    "prompt": "",
    "max_tokens": 100,
    "temperature": 0.8,
    "top_k": 0,
    "top_p": 1.0,
    "seed": 0,
    "n": 1,
}


def parse(args: list[str]) -> dict:
    opts = dict(DEFAULTS)
    for a in args:
        key, sep, value = a.partition("=")
        if not sep or key not in DEFAULTS:
            raise ConfigError(f"{a!r}: expected key=value with key one of {', '.join(DEFAULTS)}")
        kind = type(DEFAULTS[key]) if DEFAULTS[key] is not None else str
        try:
            opts[key] = kind(value)
        except ValueError:
            raise ConfigError(f"{key}={value!r} must be a {kind.__name__}") from None
    if (opts["ckpt"] is None) == (opts["hf"] is None):
        raise ConfigError("give exactly one of ckpt=<run dir or .ckpt file> or hf=<local HF dir>")
    _check_ranges(opts)
    return opts


def _check_ranges(opts: dict) -> None:
    """Sampling settings that cannot work: one line each."""
    t, p = opts["temperature"], opts["top_p"]
    if not (math.isfinite(t) and t >= 0):
        raise ConfigError(f"temperature={t} must be a finite number >= 0 (0: greedy)")
    if not (math.isfinite(p) and 0 < p <= 1):
        raise ConfigError(f"top_p={p} must be in (0, 1] (1: off)")
    for key in ("n", "max_tokens", "top_k"):
        low = 1 if key == "n" else 0
        if opts[key] < low:
            raise ConfigError(f"{key}={opts[key]} must be >= {low}")


def _find_ckpt(path: Path) -> Path:
    """A file, or a run dir's latest checkpoint (never a search of some other tree)."""
    if path.is_file():
        return path
    if not path.exists():
        raise ConfigError(f"ckpt={path}: no such file or run directory")
    for name in ("last.ckpt", "prev.ckpt"):  # a run dir: its latest checkpoint
        if (path / CKPT_DIR / name).is_file():
            return path / CKPT_DIR / name
    found = sorted(path.glob("*.ckpt"), key=lambda p: (p.name != "last.ckpt", -p.stat().st_mtime))
    if not found:
        raise ConfigError(
            f"ckpt={path}: not a run directory (no {CKPT_DIR}/last.ckpt) and no .ckpt file in it"
        )
    return found[0]


def _run_dir(ckpt_path: Path) -> Path:
    """The run directory of a checkpoint (``<run>/checkpoints/last.ckpt`` → ``<run>``)."""
    parent = ckpt_path.parent
    return parent.parent if parent.name == CKPT_DIR else parent


def load_checkpoint(path: str | Path):
    """A trained archlab model, its full config dict and its tokenizer, from a run dir or a
    checkpoint file (``train/checkpoint.py``'s format; the tokenizer from the run dir)."""
    ckpt_path = _find_ckpt(Path(path).expanduser())
    try:
        ckpt = checkpoint.load(ckpt_path)
    except ConfigError as e:  # torch's own text suggests weights_only=False: never
        raise ConfigError(f"ckpt={path}: {str(e).split(' (')[0]}") from None
    full = ckpt.get("config") or {}
    if not isinstance(full.get("model"), dict):
        raise ConfigError(f"ckpt={ckpt_path}: the checkpoint holds no model config")
    merged = OmegaConf.merge(OmegaConf.structured(ModelConfig), full["model"])
    cfg: ModelConfig = OmegaConf.to_object(merged)
    validate_model(cfg)
    state = {k[len("model.") :]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    model = Transformer(cfg)
    model.load_state_dict(state)
    return model.eval(), full, _run_tokenizer(_run_dir(ckpt_path), full)


def _run_tokenizer(run_dir: Path, full: dict):
    """The tokenizer the run trained with (its saved files beside config.yaml)."""
    if (run_dir / "config.yaml").is_file():
        return load_run_tokenizer(run_dir)
    tcfg = full.get("tokenizer") or {"name": "byte"}
    if tcfg.get("name", "byte") != "byte":
        raise ConfigError(
            f"ckpt: the run trained with tokenizer={tcfg.get('name')}, whose files are in its run "
            f"directory, but {run_dir} has no config.yaml: pass the run directory"
        )
    return make_tokenizer("byte")


class _HFTokenizer:
    def __init__(self, tok):
        self.tok = tok

    def encode(self, data: bytes):
        return self.tok.encode(data.decode("utf-8"))

    def decode(self, ids) -> str:
        return self.tok.decode([int(i) for i in ids])


def _prompt_ids(tokenizer, prompt: str, cfg: ModelConfig) -> list[int]:
    """The prompt's token ids; one line if it is empty, outside the model's vocabulary, or
    longer than a learned-position model's context."""
    try:
        ids = [int(i) for i in tokenizer.encode(prompt.encode("utf-8"))]
    except Exception as e:
        raise ConfigError(
            f"prompt={prompt!r} cannot be encoded by the run's tokenizer ({e})"
        ) from None
    if not ids:
        raise ConfigError('prompt="..." must not be empty')
    if max(ids) >= cfg.vocab_size or min(ids) < 0:
        raise ConfigError(
            f"prompt={prompt!r} has tokens outside the model's vocabulary "
            f"(id {max(ids)} >= model.vocab_size={cfg.vocab_size}): use characters it trained on"
        )
    if cfg.position == "learned" and len(ids) > cfg.block_size:
        raise ConfigError(
            f"prompt is {len(ids)} tokens but this model has learned positions up to "
            f"model.block_size={cfg.block_size}: shorten the prompt"
        )
    return ids


def main(args: list[str]) -> int:
    opts = parse(args)
    torch.manual_seed(opts["seed"])
    if opts["hf"]:
        model = from_hf(opts["hf"])
        try:
            from transformers import AutoTokenizer  # the hf extra: only for hf=

            tokenizer = _HFTokenizer(AutoTokenizer.from_pretrained(opts["hf"]))
        except Exception as e:
            raise ConfigError(
                f"hf={opts['hf']}: no usable tokenizer in that directory ({e})"
            ) from None
    else:
        model, _, tokenizer = load_checkpoint(opts["ckpt"])
    ids = _prompt_ids(tokenizer, opts["prompt"], model.cfg)
    new = opts["max_tokens"]
    if model.cfg.position == "learned" and len(ids) + new > model.cfg.block_size:
        new = max(0, model.cfg.block_size - len(ids))  # learned positions end at block_size
        print(
            f"archlab generate: max_tokens cut to {new} (model.block_size="
            f"{model.cfg.block_size}, learned positions)",
            file=sys.stderr,
        )
    gen = torch.Generator().manual_seed(opts["seed"])
    idx = torch.tensor([ids] * opts["n"])
    out = model.generate(
        idx,
        new,
        temperature=opts["temperature"],
        top_k=opts["top_k"] or None,
        top_p=opts["top_p"],
        generator=gen,
    )
    for row in out:
        print(tokenizer.decode(row.tolist()))
        if opts["n"] > 1:
            print("-" * 40)
    return 0
