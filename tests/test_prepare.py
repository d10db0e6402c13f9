"""`archlab prepare`: builds the token stores a train command would use, once, and trains
nothing; later runs with the same data and tokenizer settings reuse them (issue #17)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import yaml

from archlab.compose import compose
from archlab.data.store import load_tokens
from archlab.train.paths import resolve_user_paths
from helpers import TINY, run_cli
from test_data import words_text


def _stores(stdout: str) -> list[tuple[str, str]]:
    return re.findall(r"archlab prepare: (built|reused) token store (\S+)", stdout)


def test_prepare_builds_each_store_of_a_sweep_once_and_trains_nothing(tmp_path):
    (tmp_path / "w.txt").write_text(words_text(20000))
    args = [
        "prepare",
        "-m",
        "data=text",
        "data.path=w.txt",  # relative to the launch directory, as in `archlab train`
        f"data.cache_dir={tmp_path / 'c'}",
        "tokenizer=byte,char",
        "model/mlp=gelu,swiglu",  # four jobs, two (data, tokenizer) configs
    ]
    first = run_cli(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    built = _stores(first.stdout)
    assert [b for b, _ in built] == ["built", "built"] and len({p for _, p in built}) == 2
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "multirun").exists()
    again = run_cli(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert _stores(again.stdout) == [("reused", p) for _, p in built]
    assert "tokenised" not in again.stderr  # nothing re-encoded
    # the store a training job of the same overrides loads is the one printed, with its tokens
    cfg = compose(["data=text", "data.path=w.txt", f"data.cache_dir={tmp_path / 'c'}"])
    resolve_user_paths(cfg, tmp_path)
    d = load_tokens(cfg.data, cfg.tokenizer)
    assert str(d.store_dir) == built[0][1]
    text = (tmp_path / "w.txt").read_bytes()
    assert np.array_equal(np.concatenate([d.train, d.val]), np.frombuffer(text, np.uint8))


def test_prepare_refuses_bad_input_in_one_line(tmp_path):
    r = run_cli("prepare", "data=text", "data.path=missing.txt", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "archlab prepare: error: data.path=" in r.stderr and "matches no file" in r.stderr
    r = run_cli("prepare", "--cfg", "job", cwd=tmp_path)  # a print-only flag: nothing is built
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--cfg job" in r.stderr
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_train_after_prepare_reuses_the_store(tmp_path):
    (tmp_path / "w.txt").write_text(words_text(20000))
    data = ["data=text", "data.path=w.txt", f"data.cache_dir={tmp_path / 'c'}", "tokenizer=char"]
    prepared = run_cli("prepare", *data, cwd=tmp_path)
    assert prepared.returncode == 0, prepared.stderr
    [(_, store)] = _stores(prepared.stdout)
    run_dir = tmp_path / "run"
    train = ["train", *data, *TINY, "logger=none", f"hydra.run.dir={run_dir}"]
    trained = run_cli(*train, cwd=tmp_path, timeout=1200)  # a loaded machine can be slow
    assert trained.returncode == 0, trained.stderr
    assert "tokenised" not in trained.stderr
    info = yaml.safe_load((run_dir / "config.yaml").read_text())["data_info"]
    assert info["store"] == store.rsplit("/", 1)[1]
