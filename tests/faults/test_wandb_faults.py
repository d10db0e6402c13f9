"""W&B faults never cost a job, and never leave a traceback: W&B's service (``wandb-core``) is
killed deterministically with ``ARCHLAB_FAULT=…:wandb-core`` (archlab/train/inject.py) and
``wandb.init`` is made to raise by a ``sitecustomize`` in the child process only."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from helpers import REPO, TINY, run_cli
from test_train_cli import read_jsonl, wandb_history

INIT_FAILS_FOR_SEED_1 = """
import wandb

_init = wandb.init


def init(*args, **kwargs):
    if "seed=1" in (kwargs.get("name") or ""):
        raise RuntimeError("injected: wandb.init failed")
    return _init(*args, **kwargs)


wandb.init = init
"""


def _w_and_b_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if "W&B" in line and "W&B run:" not in line]


@pytest.mark.slow
def test_a_wandb_failure_in_one_sweep_job_turns_wandb_off_for_that_job_only(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(INIT_FAILS_FOR_SEED_1)
    env = {  # job seed=0: wandb-core killed after step 2; job seed=1: wandb.init raises
        "ARCHLAB_FAULT": "SIGKILL@2:step:wandb-core",
        "PYTHONPATH": f"{site}{os.pathsep}{REPO / 'src'}",
    }
    steps = ["train.max_steps=6", "train.log_every=2", "train.val_every=3"]
    args = ["-m", *TINY, *steps, "logger=wandb", "seed=0,1,2", "name=wb", f"out_dir={tmp_path}"]
    r = run_cli("train", *args, cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Traceback" not in r.stderr and "MailboxClosed" not in r.stdout + r.stderr
    runs = {}
    for path in (tmp_path / "sweeps" / "wb").glob("*/summary.json"):
        summary = json.loads(path.read_text())
        runs[summary["seed"]] = summary
        assert summary["status"] == "completed" and summary["steps"] == 6, summary
        rows = read_jsonl(path.parent / "metrics.jsonl")  # the local record is complete
        assert [row["step"] for row in rows if "val/loss" in row] == [3, 6]
    assert sorted(runs) == [0, 1, 2]
    assert runs[0]["wandb_error"] and "injected" in runs[1]["wandb_error"]
    assert runs[1]["wandb_dir"] is None
    assert "wandb_error" not in runs[2]  # the next job has W&B again, with every row
    rows = read_jsonl(Path(runs[2]["run_dir"]) / "metrics.jsonl")
    logged = [h["val/loss"] for h in wandb_history(runs[2]["wandb_dir"]) if "val/loss" in h]
    assert logged == pytest.approx([row["val/loss"] for row in rows if "val/loss" in row])
    lines = _w_and_b_lines(r.stdout + r.stderr)  # one line for each faulted job, no more
    assert len(lines) == 2, lines
    assert "W&B failed mid-run" in lines[0] and "W&B could not start" in lines[1]


@pytest.mark.slow
def test_ctrl_c_that_also_kills_wandb_core_ends_without_a_traceback(tmp_path):
    # Ctrl+C signals the whole process group: wandb-core dies too, and its atexit hook used
    # to print a 30-line traceback after archlab's clean stop
    steps = ["train.max_steps=4", "train.log_every=1", "train.val_every=4"]
    args = [*TINY, *steps, "logger=wandb", f"out_dir={tmp_path}"]
    fault = "SIGINT@2:step:wandb-core,SIGINT@2:step"
    r = run_cli("train", *args, cwd=tmp_path, env={"ARCHLAB_FAULT": fault})
    assert r.returncode == 130, r.stderr[-3000:]
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    summary = json.loads(next(tmp_path.glob("runs/*/summary.json")).read_text())
    assert summary["status"] == "interrupted" and summary["wandb_error"]
    assert len(_w_and_b_lines(r.stdout + r.stderr)) == 1
