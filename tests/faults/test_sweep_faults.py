"""Sweeps: one folder per job however long the override list; a real full disk gives one line
and a sweep with failed jobs exits non-zero, saying how many."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from helpers import TINY, run_cli

PAD = [  # identity overrides that only make the folder name long (> 200 characters)
    "optim.decay_norms_and_biases=false",
    "optim.decay_embeddings=false",
    "model.scale_embeddings=false",
    "model.tie_embeddings=true",
    "train.divergence_patience=3",
    "train.telemetry_every=50",
    "data.single_epoch=false",
    "model.head_bias=false",
]


@pytest.mark.slow
def test_long_override_lists_get_one_folder_per_job(tmp_path):
    args = ["-m", *TINY, "train.max_steps=2", "logger=none", *PAD, "seed=0,1", "name=long"]
    r = run_cli("train", *args, f"out_dir={tmp_path}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "already" not in r.stdout
    jobs = sorted((tmp_path / "sweeps" / "long").glob("*/summary.json"))
    assert len(jobs) == 2 and all(len(p.parent.name) > 150 for p in jobs)
    seeds = sorted(json.loads(p.read_text())["seed"] for p in jobs)
    assert seeds == [0, 1] and all(json.loads(p.read_text())["steps"] == 2 for p in jobs)


@pytest.fixture
def full_disk(tmp_path):
    """A real 1 MB file system: a tiny model's checkpoint (~1.5 MB) does not fit."""
    mnt = tmp_path / "full"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)])
    if r.returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)])


@pytest.mark.slow
def test_real_full_disk_one_line_and_sweep_exits_non_zero(full_disk, tmp_path):
    common = [*TINY, "train.max_steps=4", "train.ckpt_every=2", "logger=none"]
    r = run_cli("train", *common, f"out_dir={full_disk}", cwd=tmp_path)
    err = r.stderr.strip()
    assert r.returncode == 1 and "disk full (ENOSPC)" in err.splitlines()[-1], err[-3000:]
    assert "Traceback" not in err
    run = next((full_disk / "runs").iterdir())
    assert json.loads((run / "summary.json").read_text())["status"] == "failed"
    for p in Path(run).rglob(".*tmp*"):
        raise AssertionError(f"temp file left: {p}")
    for p in (full_disk / "runs").iterdir():  # make room for the sweep
        subprocess.run(["rm", "-rf", str(p)])
    r = run_cli("train", "-m", *common, "seed=0,1", "name=s", f"out_dir={full_disk}", cwd=tmp_path)
    assert r.returncode == 1, r.stderr[-3000:]
    assert "2 of 2 jobs failed" in r.stderr.strip().splitlines()[-1], r.stderr[-3000:]
    assert "Traceback" not in r.stderr
