"""How the campaign's jobs share the cores, and the calibration that measures it.

* ``run_parallel``: ``jobs`` worker processes, each training one job at a time with
  ``threads`` torch threads (1 job × 2 threads runs in this process). Workers are reused, so
  each imports torch/Lightning once; jobs are handed out one by one (long and short runs mix).
* ``calibrate``: trains the standard rung (``experiments/campaign.yaml: rung``) for a few
  hundred steps in each layout (1×2 and 2×1 on 2 cores) through ``archlab train`` and caches
  tokens/s per job and in total under ``~/.cache/archlab/calibration.json``, keyed by CPU
  model, cores, torch and numerics version. The load average during the measurement is
  stored beside it: a number taken on a loaded machine is marked so and must not decide the
  layout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

CACHE = Path(os.path.expanduser(os.environ.get("ARCHLAB_CACHE") or "~/.cache/archlab"))
CALIBRATION = "calibration.json"


def _worker(claim, runs_dir, job, threads, on_done) -> dict:
    from archlab.claims.runner import run_jobs

    counts = {"ran": 0, "skipped": 0, "failed": 0}
    run_jobs(claim, runs_dir, [job], threads, counts, lambda m: print(m, flush=True), on_done)
    return counts


def run_parallel(claim, runs_dir, jobs, threads, counts, log, on_done, n_jobs: int) -> dict:
    """``run_jobs`` over ``n_jobs`` worker processes (each job once; done jobs skipped)."""
    from archlab.claims.runner import run_jobs

    if n_jobs <= 1 or len(jobs) <= 1:
        return run_jobs(claim, runs_dir, jobs, threads, counts, log, on_done)
    with ProcessPoolExecutor(n_jobs, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(_worker, claim, runs_dir, j, threads, on_done) for j in jobs]
        for f in futures:
            for k, v in f.result().items():
                counts[k] += v
    return counts


# --------------------------------------------------------------------------- calibration


def machine_key() -> str:
    import torch

    from archlab.numerics import NUMERICS_VERSION
    from archlab.runs.machine import cpu_name

    return (
        f"{cpu_name()}|{os.cpu_count()} cores|torch {torch.__version__}|numerics {NUMERICS_VERSION}"
    )


def read_calibration(cache: Path = CACHE) -> dict[str, Any] | None:
    try:
        return json.loads((cache / CALIBRATION).read_text()).get(machine_key())
    except (OSError, ValueError, AttributeError):
        return None


def _train_cmd(rung: list[str], steps: int, threads: int, out: Path, seed: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "archlab",
        "train",
        *rung,
        f"train.max_steps={steps}",
        f"trainer.threads={threads}",
        "train.val_every=1000000",
        "train.ckpt_every=0",
        f"seed={seed}",
        f"hydra.run.dir={out / f'job{seed}'}",
    ]


def measure(rung: list[str], layout: tuple[int, int], steps: int) -> dict[str, Any]:
    """Train ``jobs`` copies of the rung at once with ``threads`` each: tokens/s per job."""
    jobs, threads = layout
    with tempfile.TemporaryDirectory(prefix="archlab-calib-") as tmp:
        env = {**os.environ, "WANDB_MODE": "disabled"}
        procs = [
            subprocess.Popen(
                _train_cmd(rung, steps, threads, Path(tmp), i),
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            for i in range(jobs)
        ]
        errors = [p.communicate()[1] for p in procs]
        rates = []
        for i, p in enumerate(procs):
            try:
                summary = json.loads((Path(tmp) / f"job{i}" / "summary.json").read_text())
            except (OSError, ValueError):
                summary = {}
            if p.returncode != 0 or not summary.get("tokens_per_sec"):
                tail = errors[i].decode(errors="replace").strip().splitlines()[-1:] or ["?"]
                raise RuntimeError(f"calibration job failed: {tail[0][:200]}")
            rates.append(float(summary["tokens_per_sec"]))
    return {"per_job": sum(rates) / len(rates), "total": sum(rates)}


def calibrate(rung: list[str], steps: int = 200, cache: Path = CACHE, log=print) -> dict:
    """Measure 1×cores and cores×1 (and cache them with the load average just before)."""
    cores = min(2, os.cpu_count() or 1)
    layouts = [(1, cores)] + ([(cores, 1)] if cores > 1 else [])
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    result: dict[str, Any] = {"rung": rung, "steps": steps, "layouts": {}}
    for layout in layouts:
        rate = measure(rung, layout, steps)
        result["layouts"][f"{layout[0]}x{layout[1]}"] = rate
        log(
            f"calibration: {layout[0]} job(s) x {layout[1]} thread(s): "
            f"{rate['per_job']:,.0f} tokens/s per job, {rate['total']:,.0f} in total"
        )
    # The load average after the runs is the calibration's own load (it keeps every core busy),
    # so only the load *before* it says whether something else was running.
    result["load_average"] = load_before
    result["quiet"] = result["load_average"] is not None and result["load_average"] < 0.5 * (
        os.cpu_count() or 1
    )
    result["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    path = cache / CALIBRATION
    data = {}
    if path.exists():
        try:
            data = json.loads(path.read_text())
        except ValueError:
            data = {}
    data[machine_key()] = result
    cache.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    return result


def fastest(calibration: dict[str, Any]) -> str | None:
    layouts = calibration.get("layouts") or {}
    return max(layouts, key=lambda k: layouts[k]["total"]) if layouts else None
