"""Data loss: a refused or failed start touches nothing that existed; damaged checkpoints fall
back; a killed writer's temp file is cleaned; one process per run directory. Crashes are
injected deterministically with ARCHLAB_FAULT (archlab/train/inject.py), never timed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import REPO, run_cli

BASE = [
    "model/size=tiny",
    "train.batch_size=8",
    "data.val_windows=8",
    "train.max_steps=8",
    "train.log_every=2",
    "train.val_every=4",
    "train.ckpt_every=4",
    "optim.warmup_steps=2",
    "logger=none",
]


def snapshot(run: Path) -> dict:
    return {
        str(p.relative_to(run)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(run.rglob("*"))
        if p.is_file()
    }


def summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


@pytest.fixture(scope="module")
def done(tmp_path_factory) -> Path:
    """A finished 8-step run: last.ckpt at step 8, prev.ckpt at step 4."""
    root = tmp_path_factory.mktemp("done")
    r = run_cli("train", *BASE, f"hydra.run.dir={root / 'run'}", f"out_dir={root}", cwd=root)
    assert r.returncode == 0, r.stderr[-3000:]
    return root / "run"


def test_refused_or_finished_resume_changes_nothing(done, tmp_path):
    before = snapshot(done)
    ckpt = done / "checkpoints" / "last.ckpt"
    cases = [  # (arguments, exit code, words in the one line)
        ([f"resume={done}", "optim.lr=0.01"], 2, "optim.lr=0.003 in the checkpoint"),
        ([f"resume={ckpt}", "model.d_model=128", f"out_dir={tmp_path}/new"], 2, "model.d_model"),
        ([f"resume={done}", "train.max_steps=3"], 2, "below the checkpoint's step 8"),
        ([f"resume={done}"], 0, "already complete (8 of 8 steps)"),
    ]
    for args, code, words in cases:
        r = run_cli("train", *args, cwd=tmp_path)
        out = (r.stderr if code else r.stdout).strip()
        assert r.returncode == code and words in out, (args, r.stdout[-1500:], r.stderr[-1500:])
        assert out.count("\n") == 0 and "Traceback" not in r.stderr, out
        assert snapshot(done) == before, args  # not a byte, not an mtime
    assert not (tmp_path / "new").exists()


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncated", "zero-byte"])
def test_damaged_last_ckpt_falls_back_to_prev_and_stale_temps_go(done, tmp_path, damage):
    run = tmp_path / "run"
    shutil.copytree(done, run)
    last = run / "checkpoints" / "last.ckpt"
    last.write_bytes(
        last.read_bytes()[: last.stat().st_size // 2] if damage == "truncated" else b""
    )
    stale = run / "checkpoints" / ".last.ckpt.tmp4242"  # a SIGKILLed writer's leftover
    stale.write_bytes(b"x" * 1000)
    r = run_cli("train", f"resume={run}", "train.max_steps=10", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resuming from prev.ckpt instead" in r.stderr
    s = summary(run)
    assert s["status"] == "completed" and s["steps"] == 10 and s["resumed_from_step"] == 4
    assert not stale.exists()


@pytest.mark.slow
@pytest.mark.parametrize("phase", ["before-ckpt", "during-ckpt", "after-ckpt"])
def test_sigkill_at_each_checkpoint_phase_then_resume_is_exact(done, tmp_path, phase):
    run = tmp_path / "run"
    args = [*BASE, f"hydra.run.dir={run}", f"out_dir={tmp_path}"]
    r = run_cli("train", *args, cwd=tmp_path, env={"ARCHLAB_FAULT": f"SIGKILL@4:{phase}"})
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
    temps = list((run / "checkpoints").glob(".*tmp*")) if (run / "checkpoints").exists() else []
    assert bool(temps) == (phase == "during-ckpt")  # the full-size temp of the killed write
    r = run_cli("train", f"resume={run}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    s = summary(run)
    assert s["status"] == "completed" and s["steps"] == 8
    assert s["resumed_from_step"] == (4 if phase == "after-ckpt" else None)
    assert not list((run / "checkpoints").glob(".*tmp*"))
    ref = [{k: v for k, v in json.loads(ln).items() if k not in ("time", "tokens_per_sec")}
           for ln in (done / "metrics.jsonl").read_text().splitlines()]  # fmt: skip
    got = [{k: v for k, v in json.loads(ln).items() if k not in ("time", "tokens_per_sec")}
           for ln in (run / "metrics.jsonl").read_text().splitlines()]  # fmt: skip
    assert got == ref


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


@pytest.mark.slow
def test_second_process_on_a_run_dir_is_refused_and_a_crash_frees_it(tmp_path):
    run = tmp_path / "run"
    args = [*BASE, f"hydra.run.dir={run}", f"out_dir={tmp_path}"]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "ARCHLAB_FAULT": "SIGSTOP@2:step"}
    first = subprocess.Popen(  # stops itself after step 2, holding the run dir's lock
        [sys.executable, "-m", "archlab", "train", *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 300
        while _state(first.pid) != "T":  # a state, not a timing: it stops at step 2
            assert first.poll() is None and time.time() < deadline, "never reached step 2"
            time.sleep(0.1)
        before = snapshot(run)
        r = run_cli("train", *args, "seed=1", cwd=tmp_path)
        err = r.stderr.strip()
        assert r.returncode == 2 and err.count("\n") == 0, err[-2000:]
        assert f"in use by pid {first.pid}" in err and "Traceback" not in err, err
        assert snapshot(run) == before  # not even .hydra/overrides.yaml
    finally:
        first.kill()  # a crash: the kernel drops its lock, the lock file stays behind
        first.wait()
    assert (run / ".archlab.lock").exists()
    r = run_cli("train", *args, "resume=auto", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert summary(run)["status"] == "completed"


@pytest.mark.slow
def test_sigterm_without_checkpoints_does_not_advise_resume(tmp_path):
    run = tmp_path / "run"
    r = run_cli(
        "train",
        *BASE,
        "train.ckpt_every=0",
        f"hydra.run.dir={run}",
        f"out_dir={tmp_path}",
        cwd=tmp_path,
        env={"ARCHLAB_FAULT": "SIGTERM@2:step"},
    )
    assert r.returncode == 143, r.stderr[-2000:]
    s = summary(run)
    assert s["status"] == "interrupted" and "resume=auto" not in s["error"]
    assert "no checkpoint was written" in s["error"]
    assert "resume=auto" not in r.stderr and not (run / "checkpoints" / "last.ckpt").exists()
