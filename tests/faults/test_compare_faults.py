"""``archlab compare`` never averages unfinished runs in, and refuses runs that measure
different things (other tokenizer, data or validation set) in one line."""

from __future__ import annotations

import json

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


def test_runs_with_other_tokenizers_or_data_are_refused(tmp_path):
    for key, value in (("tokenizer.name", "bpe"), ("data.val_windows", 64)):
        sweep = tmp_path / key
        _sweep(sweep, {key: value})
        r = run_cli("compare", str(sweep), "--out", str(tmp_path / "out"), cwd=tmp_path)
        err = r.stderr.strip()
        assert r.returncode == 2, (key, err[-2000:])
        assert err.splitlines()[-1].startswith("archlab compare: error: runs measure different")
        assert key in err.splitlines()[-1] and "Traceback" not in err
    assert not (tmp_path / "out").exists()
