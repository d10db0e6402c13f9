"""Sweeps: divergence is marked everywhere, sweeps resume, compare reads the result."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import TINY, run_cli
from test_train_cli import wandb_summary


def summaries(sweep: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sweep.glob("*/summary.json")}


def test_diverging_arm_is_marked_and_sweep_resumes_and_compares(tmp_path):
    args = [
        "train",
        "-m",
        *TINY,
        "train.max_steps=30",
        "optim.warmup_steps=0",
        "optim.lr=0.003,0.03,30",
        f"out_dir={tmp_path}",
        "name=lr",
    ]
    r = run_cli(*args, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    runs = summaries(tmp_path / "sweeps" / "lr")
    by_lr = {s["overrides"][-1]: s for s in runs.values()}
    bad = by_lr["optim.lr=30"]
    assert bad["status"] == "diverged" and 1 <= bad["diverged_at_step"] < 30
    assert bad["steps"] == bad["diverged_at_step"]  # stopped right there
    assert by_lr["optim.lr=0.003"]["status"] == "completed"
    # the three jobs share one process: each records its own CPU time, not the process's
    prov = bad["provenance"]
    assert 0 < prov["cpu_seconds"] <= bad["elapsed_sec"] * prov["threads"] + 1.0
    info = wandb_summary(bad["wandb_dir"])
    assert "diverged" in info["tags"] and info["summary"]["status"] == "diverged"
    assert "diverged at step" in r.stdout + r.stderr

    # re-running the same sweep skips the finished jobs
    mtimes = {k: (tmp_path / "sweeps" / "lr" / k / "summary.json").stat().st_mtime for k in runs}
    again = run_cli(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.count("archlab: skipping") == 3
    for k, t in mtimes.items():
        assert (tmp_path / "sweeps" / "lr" / k / "summary.json").stat().st_mtime == t

    out = tmp_path / "report"
    c = run_cli("compare", str(tmp_path / "sweeps" / "lr"), "--out", str(out), cwd=tmp_path)
    assert c.returncode == 0, c.stderr[-2000:]
    report = (out / "report.md").read_text()
    assert "sensitivity" in report.lower()
    data = json.loads((out / "compare.json").read_text())
    assert data["diverged_runs"] and len(data["arms"]) == 1
    assert data["arms"][0]["lr_sensitivity"] is not None
    assert (out / "loss_vs_lr.png").stat().st_size > 1000


def test_joblib_launcher_runs_jobs_in_parallel_with_split_threads(tmp_path):
    r = run_cli(
        "train",
        "-m",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        *TINY,
        "train.max_steps=5",
        "seed=0,1",
        "logger=none",
        f"out_dir={tmp_path}",
        "name=par",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    runs = summaries(tmp_path / "sweeps" / "par")
    assert len(runs) == 2 and all(s["status"] == "completed" for s in runs.values())
    import yaml

    for name in runs:
        cfg = yaml.safe_load((tmp_path / "sweeps" / "par" / name / "config.yaml").read_text())
        assert cfg["trainer"]["threads"] == 1  # 2 jobs × 1 thread on 2 cores


def test_optuna_lr_search_and_slurm_launcher_config(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    r = run_cli(
        "train",
        "-m",
        "hparams_search=lr_optuna",
        "hydra.sweeper.n_trials=2",
        *TINY,
        "train.max_steps=5",
        "logger=none",
        f"out_dir={tmp_path}",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    runs = list((tmp_path / "sweeps" / "lr_optuna").glob("*/summary.json"))
    assert len(runs) == 2
    best = (tmp_path / "sweeps" / "lr_optuna" / "optimization_results.yaml").read_text()
    losses = [json.loads(p.read_text())["val_loss"] for p in runs]
    assert f"best_value: {min(losses)}" in best

    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    c = run_cli("train", "hydra/launcher=slurm", "--cfg", "hydra", cwd=tmp_path)
    assert c.returncode == 0, c.stderr[-2000:]
    assert "SlurmLauncher" in c.stdout and "max_num_timeout: 3" in c.stdout
