"""Checkpoints in the numerics-v1 layout (separate q/k/v and gate/up, knob-dependent keys) load
into today's model with the same logits; serial and parallel blocks name weights alike.

The fixtures were written by the v1 code (commit 5119d12's parent) and are never regenerated."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from archlab.config import ModelConfig
from archlab.model import Transformer
from archlab.model.migrate import is_v1
from archlab.train.checkpoint import load
from helpers import TINY, run_cli

FIXTURES = Path(__file__).parent / "fixtures"
V1 = torch.load(FIXTURES / "v1_state_dicts.pt", weights_only=True)
CASES = [k for k in V1 if k != "idx"]


@pytest.mark.parametrize("name", CASES)
def test_v1_state_dict_loads_with_the_same_logits(name):
    case = V1[name]
    assert is_v1(case["state_dict"])
    model = Transformer(ModelConfig(**case["config"])).eval()
    model.load_state_dict(case["state_dict"])  # strict: every key mapped, none left over
    assert not is_v1(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(model(V1["idx"]), case["logits"], atol=1e-5, rtol=1e-5)


def test_v1_training_checkpoint_loads_through_the_checkpoint_loader():
    """A whole archlab checkpoint of a v1 run (Lightning ``model.``-prefixed keys, GQA)."""
    ckpt = load(FIXTURES / "v1_run.ckpt")
    ref = torch.load(FIXTURES / "v1_run_logits.pt", weights_only=True)
    model = Transformer(ModelConfig(**ckpt["config"]["model"])).eval()
    prefixed = {f"model.{k}": v for k, v in model.state_dict().items()}
    wrapper = torch.nn.Module()
    wrapper.model = model
    wrapper.load_state_dict(ckpt["state_dict"])  # the pre-hook sees prefix "model."
    assert set(wrapper.state_dict()) == set(prefixed)
    with torch.no_grad():
        torch.testing.assert_close(model(ref["idx"]), ref["logits"], atol=1e-5, rtol=1e-5)


def _block_weights(**kw) -> set[str]:
    model = Transformer(ModelConfig(n_layers=1, d_model=16, n_heads=2, vocab_size=32, **kw))
    return {k for k in model.state_dict() if re.match(r"blocks\.0\.(attn|mlp)\.", k)}


def test_serial_and_parallel_blocks_name_their_weights_alike():
    serial, parallel = _block_weights(block="serial"), _block_weights(block="parallel")
    assert serial == parallel
    assert {"blocks.0.attn.qkv.weight", "blocks.0.mlp.fc.weight"} <= serial


def test_resuming_a_v1_checkpoint_is_refused_in_one_line(tmp_path):
    """Its weights load, but a run never continues across a numerics change."""
    r = run_cli(
        "train",
        *TINY,
        "logger=none",
        f"resume={FIXTURES / 'v1_run.ckpt'}",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
    )
    assert r.returncode != 0
    assert "numerics version 1" in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]
