"""``archlab generate`` end to end from a saved archlab checkpoint (file and run dir), with the
tokenizer the run trained with."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import yaml

from archlab.cli import main
from archlab.config import ArchlabConfig, ModelConfig
from archlab.data.tokenizers import CharTokenizer
from archlab.model import Transformer
from archlab.train.checkpoint import FORMAT, VERSION
from archlab.train.run import Job, train
from helpers import tiny_config


@pytest.fixture
def run_dir(tmp_path):
    cfg = ModelConfig(
        n_layers=2,
        d_model=32,
        n_heads=4,
        block_size=32,
        position="alibi",
        window="local_global",
        global_every=2,
        sliding_window=6,
    )
    torch.manual_seed(0)
    model = Transformer(cfg)
    ckpt_dir = tmp_path / "checkpoints"
    ckpt_dir.mkdir()
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    full = dataclasses.asdict(ArchlabConfig(model=cfg))
    ckpt = {"format": FORMAT, "version": VERSION, "state_dict": state, "config": full}
    torch.save(ckpt, ckpt_dir / "last.ckpt")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(full))
    return tmp_path, model


def test_generate_from_run_dir_is_seeded_and_uses_the_weights(run_dir, capsys):
    path, model = run_dir
    args = [
        "generate",
        f"ckpt={path}",
        "prompt=def f(x):",
        "max_tokens=12",
        "seed=1",
        "temperature=0",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("def f(x):")
    prompt = torch.tensor([list(b"def f(x):")])
    expected = model.eval().generate(prompt, 12, temperature=0)[0].tolist()
    assert out.rstrip("\n") == bytes(expected).decode("utf-8", errors="replace")
    sampled = [
        "generate",
        f"ckpt={path / 'checkpoints' / 'last.ckpt'}",
        "prompt=ab",
        "max_tokens=20",
        "top_k=5",
        "top_p=0.9",
        "seed=4",
    ]
    assert main(sampled) == 0
    first = capsys.readouterr().out
    assert main(sampled) == 0
    assert capsys.readouterr().out == first


def test_generate_errors_are_one_line(tmp_path, capsys):
    assert main(["generate", "prompt=x"]) == 2
    assert "exactly one of ckpt=" in capsys.readouterr().err
    assert main(["generate", f"ckpt={tmp_path}", "prompt=x"]) == 2
    assert "no .ckpt file" in capsys.readouterr().err
    assert main(["generate", "ckpt=x", "temperature=hot"]) == 2
    assert "temperature='hot' must be a float" in capsys.readouterr().err


def test_generate_decodes_with_the_runs_own_tokenizer(tmp_path, capsys):
    """A char-tokenizer run: the prompt is encoded and the sample decoded with the run's
    saved character vocabulary (not bytes), through the one checkpoint loader."""
    text = tmp_path / "corpus.txt"
    text.write_text("to be or not to be, that is the question.\n" * 200)
    cfg = tiny_config(max_steps=4)
    cfg.data.source, cfg.data.path, cfg.tokenizer.name = "text", str(text), "char"
    run = tmp_path / "run"
    train(cfg, Job(run))
    assert main(["generate", f"ckpt={run}", "prompt=to be", "max_tokens=16", "temperature=0"]) == 0
    out = capsys.readouterr().out.rstrip("\n")

    tok = CharTokenizer()
    tok.load(run)  # char_vocab.json, saved by the run
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    model = Transformer(ModelConfig(**ckpt["config"]["model"]))
    model.load_state_dict({k[6:]: v for k, v in ckpt["state_dict"].items()})
    prompt = torch.tensor([tok.encode("to be").tolist()])
    expected = tok.decode(model.eval().generate(prompt, 16, temperature=0)[0].tolist())
    assert out == expected and out.startswith("to be")
    assert set(out) <= set(text.read_text()) | {"\ufffd"}
