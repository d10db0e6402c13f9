"""End to end through the real CLI (`python -m archlab train …`) with W&B offline."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from helpers import TINY, run_cli


def wandb_records(run_dir: str) -> list[dict]:
    """Read an offline W&B run back with the wandb CLI (no network)."""
    wandb_bin = shutil.which("wandb") or str(Path(sys.executable).with_name("wandb"))
    out = subprocess.run(
        [wandb_bin, "leet", "inspect", "--json", run_dir],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def wandb_summary(run_dir: str) -> dict:
    wandb_bin = shutil.which("wandb") or str(Path(sys.executable).with_name("wandb"))
    out = subprocess.run(
        [wandb_bin, "leet", "inspect", "--summary", "--json", run_dir],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return json.loads(out)


def wandb_history(run_dir: str) -> list[dict]:
    return [r["history"]["item"] for r in wandb_records(run_dir) if r["type"] == "history"]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_single_run_writes_run_record_and_wandb_history(tmp_path):
    r = run_cli(
        "train",
        *TINY,
        "model/attention=gqa",
        "model.n_kv_heads=2",
        "loss=z_loss",
        f"out_dir={tmp_path}",
        "name=e2e",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    run_dir = Path(next((tmp_path / "runs").iterdir()))
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["steps"] == 20 and summary["tokens"] == 20 * 8 * 64
    for key in ("val_loss", "train_loss", "params", "tokens_per_sec"):
        assert isinstance(summary[key], (int, float)) and summary[key] > 0, key
    assert summary["seed"] == 0
    assert "model/attention=gqa" in summary["overrides"]
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["model"]["attention"] == "gqa" and config["model"]["n_kv_heads"] == 2
    assert config["loss"] == {"name": "z_loss", "z_loss_coef": 1e-4}

    metrics = read_jsonl(run_dir / "metrics.jsonl")
    train_rows = [m for m in metrics if "train/loss" in m]
    assert [m["step"] for m in train_rows] == [1, 5, 10, 15, 20]
    for key in ("lr", "grad_norm", "tokens_per_sec", "tokens", "train/z_loss"):
        assert key in train_rows[-1], key
    val_rows = [m for m in metrics if "val/loss" in m]
    assert [m["step"] for m in val_rows] == [10, 20]
    assert val_rows[-1]["val/loss"] == pytest.approx(summary["val_loss"])
    assert train_rows[-1]["train/loss"] < train_rows[0]["train/loss"]

    # the W&B run record really holds the same history, config, name, group and tags
    wandb_dir = summary["wandb_dir"]
    assert wandb_dir and Path(wandb_dir).is_relative_to(run_dir)
    history = wandb_history(wandb_dir)
    wb_losses = [h["train/loss"] for h in history if "train/loss" in h]
    assert wb_losses == pytest.approx([m["train/loss"] for m in train_rows])
    info = wandb_summary(wandb_dir)
    assert info["state"] == "finished" and info["exit_code"] == 0
    assert info["config"]["model"]["attention"] == "gqa"
    assert info["summary"]["status"] == "completed"
    assert "attention=gqa" in info["tags"] and "loss=z_loss" in info["tags"]
    run_record = next(r for r in wandb_records(wandb_dir) if r["type"] == "run")["run"]
    assert run_record["run_group"] == "e2e"
    assert run_record["display_name"].startswith("model/size=tiny")
    assert f"run dir: {run_dir}" in r.stdout


def test_multirun_gives_one_wandb_run_and_summary_per_job(tmp_path):
    r = run_cli(
        "train",
        "-m",
        *TINY,
        "train.max_steps=10",
        "model/mlp=gelu,swiglu",
        f"out_dir={tmp_path}",
        "name=sweep",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    jobs = sorted((tmp_path / "sweeps" / "sweep").glob("*/summary.json"))
    assert len(jobs) == 2
    summaries = [json.loads(p.read_text()) for p in jobs]
    assert all(s["status"] == "completed" for s in summaries)
    run_ids, losses = set(), []
    for s in summaries:
        info = wandb_summary(s["wandb_dir"])
        run_ids.add(info["run_id"])
        assert info["state"] == "finished"
        mlp = yaml.safe_load((Path(s["wandb_dir"]).parents[1] / "config.yaml").read_text())
        assert info["config"]["model"]["mlp"] == mlp["model"]["mlp"]
        assert f"mlp={mlp['model']['mlp']}" in info["tags"]
        history = [h for h in wandb_history(s["wandb_dir"]) if "train/loss" in h]
        assert len(history) == 3  # steps 1, 5, 10: this job's own rows only
        losses.append(history[-1]["train/loss"])
    assert len(run_ids) == 2 and losses[0] != losses[1]


def test_failing_run_is_finished_and_marked_failed(tmp_path):
    # no GPU here: Lightning refuses the accelerator after the W&B run has started
    r = run_cli("train", *TINY, "trainer=gpu", f"out_dir={tmp_path}", cwd=tmp_path)
    assert r.returncode != 0
    run_dir = next((tmp_path / "runs").iterdir())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "failed" and "gpu" in summary["error"].lower()
    info = wandb_summary(summary["wandb_dir"])
    assert info["state"] == "failed" and info["exit_code"] == 1  # finished, with an exit record
    assert info["summary"]["status"] == "failed"


def test_failing_job_does_not_abort_the_sweep(tmp_path):
    r = run_cli(
        "train",
        "-m",
        *TINY,
        "train.max_steps=5",
        "trainer=cpu,gpu",
        f"out_dir={tmp_path}",
        "name=mixed",
        "logger=none",
        cwd=tmp_path,
    )
    # every job ran; the sweep then exits 1 and says how many failed (issue #15)
    assert r.returncode == 1, r.stderr[-3000:]
    assert "1 of 2 jobs failed" in r.stderr.strip().splitlines()[-1], r.stderr[-3000:]
    summaries = [
        json.loads(p.read_text()) for p in (tmp_path / "sweeps" / "mixed").glob("*/summary.json")
    ]
    status = {s["choices"]["trainer"]: s["status"] for s in summaries}
    assert status == {"cpu": "completed", "gpu": "failed"}


def test_config_error_exits_2_with_one_line_and_no_output_dir(tmp_path):
    r = run_cli(
        "train",
        "model/attention=gqa",
        "model.n_kv_heads=3",
        f"out_dir={tmp_path}/out",
        cwd=tmp_path,
    )
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "model.n_kv_heads=3" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists()
