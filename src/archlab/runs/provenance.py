"""Provenance of a run (recorded in ``summary.json``) and the check before runs are pooled.

Recorded per run: code commit and dirty flag, the numerics version, torch and Python
versions, CPU model and threads, the corpus content hash, peak RSS and CPU-seconds. Runs that
differ in any of the *pooling keys* may not measure the same thing: ``archlab compare`` warns.
The claims runner refuses to pool runs that differ in a key that changes results
(``RESULT_KEYS``: numerics version, torch, Python, corpus); a different commit with the
same numerics version is by definition result-neutral (a change that alters results bumps
``archlab.numerics``), so a claim can resume across commits, and the report lists them. A CPU
model or thread count changes only the order of float summation (far below seed noise): listed,
not refused, so a campaign continues on the next session's machine.
"""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path
from typing import Any

from archlab.runs.machine import cpu_name

POOLING_KEYS = ("commit", "dirty", "numerics", "torch", "python", "cpu", "threads", "corpus")
RESULT_KEYS = ("numerics", "torch", "python", "corpus")
SRC = Path(__file__).resolve().parents[1]  # src/archlab


def git_state(where: Path = SRC) -> tuple[str, bool]:
    """(short commit, dirty flag of the code under src/ and conf/); ("unknown", False) outside git."""

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(where), *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        return done.stdout.strip() if done.returncode == 0 else ""

    try:
        sha = git("rev-parse", "--short=12", "HEAD")
        if not sha:
            return "unknown", False
        top = git("rev-parse", "--show-toplevel")
        dirty = git("status", "--porcelain", "--", f"{top}/src", f"{top}/conf")
        return sha, bool(dirty)
    except (OSError, subprocess.SubprocessError):
        return "unknown", False


def cpu_seconds() -> float | None:
    """CPU-seconds (user + system) of this process so far."""
    try:
        import resource
    except ImportError:  # pragma: no cover (Windows)
        return None
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def usage(cpu_since: float = 0.0) -> dict[str, float | None]:
    """Peak RSS (MiB, of the process so far) and CPU-seconds since ``cpu_since`` (a
    :func:`cpu_seconds` reading: a process that trains several jobs, as a sweep or the
    campaign's workers do, gives each job its own CPU time, not the process's total)."""
    cpu = cpu_seconds()
    if cpu is None:  # pragma: no cover (Windows: no resource module)
        return {"peak_rss_mb": None, "cpu_seconds": None}
    import resource

    scale = 1 / 1024 if platform.system() != "Darwin" else 1 / 1024 / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
    return {"peak_rss_mb": round(peak, 1), "cpu_seconds": round(cpu - cpu_since, 2)}


def collect(threads: int | None, corpus_hash: str | None) -> dict[str, Any]:
    import torch

    from archlab.numerics import NUMERICS_VERSION

    commit, dirty = git_state()
    return {
        "commit": commit,
        "dirty": dirty,
        "numerics": NUMERICS_VERSION,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu": cpu_name(),
        "threads": threads or torch.get_num_threads(),
        "corpus": corpus_hash,
    }


def pooling_differences(records, keys: tuple[str, ...] = POOLING_KEYS) -> list[str]:
    """One line per key on which the runs differ (runs without provenance are named)."""
    out = []
    missing = [r for r in records if not isinstance(r.summary.get("provenance"), dict)]
    if missing and len(missing) < len(records):
        out.append(f"{len(missing)} run(s) record no provenance (older runs)")
    provs = [r.summary["provenance"] for r in records if r not in missing]
    for key in keys:
        values = sorted({str(p.get(key)) for p in provs})
        if len(values) > 1:
            out.append(f"pooled runs differ in {key}: {', '.join(values[:4])}")
    return out
