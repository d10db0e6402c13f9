"""Issue #7: exact resume after SIGKILL, preemption signals, safe checkpoints, W&B / disk faults,
CLI config fuzzing, DDP on CPU. Everything that is about the CLI goes through the real CLI."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from conftest import REPO, run_cli

# tiny, fast, checkpoint every 4 steps, log every 3: a checkpoint often falls mid-interval
BASE = ["model/size=tiny", "train.batch_size=8", "data.val_windows=8", "train.max_steps=24",
        "train.log_every=3", "train.val_every=6", "train.ckpt_every=4", "optim.warmup_steps=5",
        "logger=none"]
WALL_CLOCK = {"time", "tokens_per_sec"}


def rows(run_dir: Path) -> list[dict]:
    return [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines()]


def comparable(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in WALL_CLOCK} for r in rows(run_dir)]


def series(run_dir: Path, key: str) -> list[tuple[int, float]]:
    return [(r["step"], r[key]) for r in rows(run_dir) if key in r]


def popen_cli(*args: str, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.Popen([sys.executable, "-m", "archlab", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(pred, proc: subprocess.Popen, timeout: float = 120) -> None:
    end = time.time() + timeout
    while not pred():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.time() < end, "timed out"
        time.sleep(0.02)


def last_step(run_dir: Path) -> int:
    try:
        return max((json.loads(ln)["step"] for ln in
                    (run_dir / "metrics.jsonl").read_text().splitlines() if ln.endswith("}")),
                   default=0)
    except (OSError, ValueError):
        return 0


# ----------------------------------------------------------------------------- resume


def test_sigkill_then_resume_equals_uninterrupted_run(tmp_path):
    ref, crash = tmp_path / "ref", tmp_path / "crash"
    r = run_cli("train", *BASE, f"hydra.run.dir={ref}", f"out_dir={tmp_path}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]

    # same config; SIGKILL a few steps after the step-8 checkpoint (mid log interval)
    p = popen_cli("train", *BASE, f"hydra.run.dir={crash}", f"out_dir={tmp_path}", cwd=tmp_path)
    ckpt = crash / "checkpoints" / "last.ckpt"
    wait_for(lambda: ckpt.exists() and last_step(crash) >= 10, p)
    os.kill(p.pid, signal.SIGKILL)
    p.wait(timeout=30)
    killed_at = last_step(crash)
    saved = torch.load(ckpt, weights_only=True)["global_step"]
    assert 0 < saved < killed_at < 24, (saved, killed_at)

    # resume through the CLI, by run dir (reads the run's own overrides)
    r = run_cli("train", f"resume={crash}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads((crash / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == 24
    assert summary["resumed_from_step"] == saved

    # bit-for-bit: every logged value except wall-clock columns, every row, same order
    assert comparable(crash) == comparable(ref)
    assert series(crash, "train/loss") == series(ref, "train/loss")
    assert series(crash, "val/loss") == series(ref, "val/loss")
    assert len(series(ref, "train/loss")) == 9  # steps 1, 3, 6, …, 24
    assert summary["val_loss"] == json.loads((ref / "summary.json").read_text())["val_loss"]


def test_sigterm_checkpoints_and_stops_then_resume_auto_continues(tmp_path):
    run = tmp_path / "run"
    args = [*BASE, "train.max_steps=200", "train.ckpt_every=1000", f"hydra.run.dir={run}",
            f"out_dir={tmp_path}"]
    p = popen_cli("train", *args, cwd=tmp_path)
    wait_for(lambda: last_step(run) >= 4, p)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 128 + signal.SIGTERM, err[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "interrupted" and "SIGTERM" in summary["error"]
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == summary["steps"] >= 4  # saved on the signal, not periodically
    assert "Traceback" not in err

    r = run_cli("train", *args, "train.max_steps=20", "resume=auto", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["resumed_from_step"] == ckpt["global_step"]
    steps = [s for s, _ in series(run, "train/loss")]
    assert steps == sorted(set(steps)) and steps[-1] == 20  # no duplicated rows


def test_checkpoint_is_plain_data_and_bad_files_give_one_line(tmp_path):
    run = tmp_path / "run"
    r = run_cli("train", *BASE, "train.max_steps=8", f"hydra.run.dir={run}",
                f"out_dir={tmp_path}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    path = run / "checkpoints" / "last.ckpt"
    ckpt = torch.load(path, weights_only=True)  # no pickled code
    assert ckpt["format"] == "archlab-checkpoint" and ckpt["global_step"] == 8
    assert all(k.startswith("model.") for k in ckpt["state_dict"])
    assert ckpt["config"]["model"]["d_model"] == 64 and "data_info" in ckpt["config"]
    assert (run / "checkpoints" / "prev.ckpt").exists()  # the previous one is kept
    assert not list((run / "checkpoints").glob(".*tmp*"))  # no temp files left behind

    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"lr": 1}}, foreign)
    pickled = tmp_path / "pickled.ckpt"
    torch.save({"format": "archlab-checkpoint", "obj": Path("x")}, pickled)  # needs unpickling code
    for bad, words in ((truncated, "cannot be loaded"), (foreign, "not an archlab checkpoint"),
                       (pickled, "cannot be loaded")):
        r = run_cli("train", *BASE, f"resume={bad}", f"out_dir={tmp_path}", cwd=tmp_path)
        assert r.returncode == 2, (bad, r.stderr[-2000:])
        err = r.stderr.strip()
        assert err.count("\n") == 0 and words in err and str(bad.name) in err, err
        assert "Traceback" not in err
