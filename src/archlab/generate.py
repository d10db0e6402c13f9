"""``archlab generate ckpt=<run dir | .ckpt> | hf=<local HF dir>  prompt="..." [key=value …]``

Keys: max_tokens (100), temperature (0.8; 0 = greedy), top_k (0 = off), top_p (1.0 = off),
seed (0), n (1 sample). Decoding uses the model's KV cache (``archlab.model.cache``).

A training checkpoint is a Lightning ``.ckpt`` (``state_dict`` with ``model.``-prefixed keys),
or a plain state dict; its model config comes from a ``config`` dict stored in the checkpoint,
``hyper_parameters``, or the run directory's ``config.yaml``. Tokenizer: the run's
``data.tokenizer`` (byte-level by default); for ``hf=`` the directory's HF tokenizer.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from archlab.config import ConfigError, ModelConfig
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
    return opts


def _find_ckpt(path: Path) -> Path:
    if path.is_file():
        return path
    found = sorted(path.rglob("*.ckpt"), key=lambda p: (p.name != "last.ckpt", -p.stat().st_mtime))
    found = found or sorted(path.rglob("*.pt"))
    if not found:
        raise ConfigError(f"ckpt={path}: no .ckpt file in that directory")
    return found[0]


def _model_config(ckpt: dict, ckpt_path: Path) -> tuple[dict, dict]:
    """(model config dict, full config dict) from the checkpoint or its run directory."""
    from omegaconf import OmegaConf

    hp = ckpt.get("hyper_parameters") or {}
    for full in (ckpt.get("config"), hp.get("config"), hp.get("cfg"), hp):
        if isinstance(full, dict) and isinstance(full.get("model"), dict):
            return full["model"], full
    for d in (ckpt_path.parent, *ckpt_path.parents[:3]):
        if (d / "config.yaml").is_file():
            full = OmegaConf.to_container(OmegaConf.load(d / "config.yaml"), resolve=False)
            return full["model"], full
    raise ConfigError(
        f"ckpt={ckpt_path}: no model config in the checkpoint or a config.yaml beside it"
    )


def load_checkpoint(path: str | Path):
    """A trained archlab model and its full config dict from a run dir / checkpoint file."""
    from omegaconf import OmegaConf

    from archlab.model import Transformer

    ckpt_path = _find_ckpt(Path(path).expanduser())
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    model_dict, full = _model_config(ckpt, ckpt_path)
    merged = OmegaConf.merge(OmegaConf.structured(ModelConfig), model_dict)
    cfg: ModelConfig = OmegaConf.to_object(merged)
    validate_model(cfg)
    state = ckpt.get("state_dict", ckpt)
    if any(k.startswith("model.") for k in state):
        state = {k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")}
    model = Transformer(cfg)
    model.load_state_dict(state)
    return model.eval(), full


class _HFTokenizer:
    def __init__(self, tok):
        self.tok = tok

    def encode(self, data: bytes):
        return self.tok.encode(data.decode("utf-8"))

    def decode(self, ids) -> str:
        return self.tok.decode([int(i) for i in ids])


def main(args: list[str]) -> int:
    opts = parse(args)
    torch.manual_seed(opts["seed"])
    if opts["hf"]:
        from archlab.hf import from_hf

        model = from_hf(opts["hf"])
        try:
            from transformers import AutoTokenizer

            tokenizer = _HFTokenizer(AutoTokenizer.from_pretrained(opts["hf"]))
        except Exception as e:
            raise ConfigError(
                f"hf={opts['hf']}: no usable tokenizer in that directory ({e})"
            ) from None
    else:
        from archlab.data.tokenizers import make_tokenizer

        model, full = load_checkpoint(opts["ckpt"])
        tokenizer = make_tokenizer((full.get("data") or {}).get("tokenizer", "byte"))
    ids = [int(i) for i in tokenizer.encode(opts["prompt"].encode("utf-8"))]
    if not ids:
        raise ConfigError('prompt="..." must not be empty')
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
