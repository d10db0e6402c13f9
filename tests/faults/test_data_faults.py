"""A token store whose ``train.bin`` is shorter than its ``meta.json`` says is rebuilt (one
warning), never trained on silently."""

from __future__ import annotations

import json

import pytest

from helpers import TINY, run_cli


@pytest.mark.slow
def test_truncated_token_store_is_rebuilt(tmp_path):
    env = {"ARCHLAB_CACHE": str(tmp_path / "cache")}  # a store of this test's own
    args = [*TINY, "train.max_steps=2", "logger=none", f"out_dir={tmp_path}"]
    first = run_cli("train", *args, f"hydra.run.dir={tmp_path / 'a'}", cwd=tmp_path, env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    (train_bin,) = (tmp_path / "cache").rglob("train.bin")
    full = train_bin.stat().st_size
    with open(train_bin, "r+b") as f:
        f.truncate(full // 50)
    again = run_cli("train", *args, f"hydra.run.dir={tmp_path / 'b'}", cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "is damaged" in again.stderr and "rebuilding it" in again.stderr
    a, b = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("a", "b"))
    assert a["train_tokens"] == b["train_tokens"] > 0
    assert train_bin.stat().st_size == full
