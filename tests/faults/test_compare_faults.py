"""``archlab compare`` never averages unfinished runs in, compares arms of other tokenizers in
bits per byte, and refuses runs that measure different things (other data or validation
set, or no byte count to convert with) in one line."""

from __future__ import annotations

import json
import math

import pytest

from archlab.runs.compare import CompareError, compare_runs
from fixtures_runs import make_run
from helpers import run_cli


def _sweep(root, extra_b: dict | None = None):
    for seed in (0, 1, 2):
        make_run(root, f"a{seed}", seed=seed, final=3.0 + seed / 100)
        make_run(root, f"b{seed}", seed=seed, final=3.2 + seed / 100,
                 overrides={"model.mlp": "gelu", **(extra_b or {})})  # fmt: skip


def test_unfinished_runs_are_reported_apart_and_not_averaged(tmp_path):
    sweep = tmp_path / "sweep"
    _sweep(sweep)  # + a run of arm b stopped early with a (misleadingly low) val loss
    make_run(sweep, "b3", seed=3, final=2.0, status="interrupted",
             overrides={"model.mlp": "gelu"})  # fmt: skip
    r = run_cli("compare", str(sweep), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads((tmp_path / "out" / "compare.json").read_text())
    b = next(a for a in result["arms"] if "gelu" in a["label"])
    assert b["n_unfinished"] == 1 and sorted(b["seeds"]) == [0, 1, 2]
    assert abs(b["final_val_loss"]["mean"] - 3.21) < 1e-9
    assert [u["status"] for u in result["unfinished_runs"]] == ["interrupted"]
    assert "1 unfinished run(s) not averaged in" in r.stderr + r.stdout


def test_runs_with_other_data_or_no_byte_count_are_refused(tmp_path):
    for key, value in (("tokenizer.name", "bpe"), ("data.val_windows", 64)):
        sweep = tmp_path / key
        _sweep(sweep, {key: value})
        r = run_cli("compare", str(sweep), "--out", str(tmp_path / "out"), cwd=tmp_path)
        err = r.stderr.strip()
        assert r.returncode == 2, (key, err[-2000:])
        assert err.splitlines()[-1].startswith("archlab compare: error: runs measure different")
        assert key in err.splitlines()[-1] and "Traceback" not in err
    assert not (tmp_path / "out").exists()


VAL_BYTES = 90_000
BYTE = {"tokenizer.name": "byte", "data_info.val_tokens": VAL_BYTES}
BPE = {"tokenizer.name": "bpe", "tokenizer.vocab_size": 512, "data_info.val_tokens": 30_000}


def _arms(root, byte: dict, bpe: dict) -> None:
    for seed in (0, 1, 2):
        make_run(root, f"byte{seed}", seed=seed, final=1.8 + seed / 100, overrides=byte)
        make_run(root, f"bpe{seed}", seed=seed, final=4.2 + seed / 100, overrides=bpe)


def test_other_tokenizers_are_compared_in_bits_per_byte(tmp_path):
    # byte tokenizer: 1 token per byte, so bpb = loss / ln 2; the BPE arm's 30,000 tokens for
    # the same 90,000 bytes: bpb = loss / 3 / ln 2 (4.2 nats/token → 2.02 bits/byte, better)
    size = {"data_info.val_bytes": VAL_BYTES}
    _arms(tmp_path / "mixed", {**BYTE, **size}, {**BPE, **size})
    r = run_cli("compare", str(tmp_path / "mixed"), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "warning: losses in bits per byte (the arms use different tokenizers)" in r.stderr
    assert "final val loss (bits/byte)" in r.stdout  # the printed table says so too
    result = json.loads((tmp_path / "out" / "compare.json").read_text())
    assert result["setup"]["unit"] == "bits/byte"
    byte, bpe = sorted(result["arms"], key=lambda a: "bpe" in a["label"])
    # compare.json keeps 12 significant digits (runs.values.stable_floats): rel 5e-12 at most
    assert byte["final_val_loss"]["mean"] == pytest.approx(1.81 / math.log(2), rel=1e-11)
    assert bpe["final_val_loss"]["mean"] == pytest.approx(4.21 / 3 / math.log(2), rel=1e-11)
    assert bpe["seed_losses"][0]["val_loss"] == pytest.approx(4.2 / 3 / math.log(2))
    # one tokenizer: nats per token unless asked (--bpb)
    _arms(tmp_path / "one", {**BYTE, **size}, {**BYTE, **size, "model.mlp": "gelu"})
    assert compare_runs([str(tmp_path / "one")])["setup"]["unit"] == "nats/token"
    result = compare_runs([str(tmp_path / "one")], bpb=True)
    losses = sorted(a["final_val_loss"]["mean"] for a in result["arms"])
    assert losses == pytest.approx([1.81 / math.log(2), 4.21 / math.log(2)], rel=1e-12)


def test_bits_per_byte_needs_the_same_validation_text(tmp_path):
    _arms(tmp_path, {**BYTE, "data_info.val_bytes": VAL_BYTES},
          {**BPE, "data_info.val_bytes": 80_000})  # fmt: skip
    with pytest.raises(
        CompareError, match="same validation text, but it is 80,000 bytes in .+ and 90,000"
    ):
        compare_runs([str(tmp_path)])
