"""What machine a run or a benchmark ran on (recorded next to timings and verdicts)."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_name() -> str:
    """The CPU model (/proc/cpuinfo's "model name" on Linux, else what platform knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    """CPU, cores, OS, Python, torch (version and threads) and the load average now."""
    import torch  # archlab compare imports this module and never needs torch otherwise

    load = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else []
    return {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "load": load,
    }


def describe_machine(m: dict | None = None) -> str:
    """One line for a report: ``<cpu>, 2 cores, Linux 6.1, Python 3.11.2, torch 2.13.0; …``."""
    m = m or machine()
    load = ", ".join(f"{x:.1f}" for x in m["load"]) or "n/a"
    return (
        f"{m['cpu']}, {m['cores']} cores, {m['system']}, Python {m['python']}, "
        f"torch {m['torch']}; load average {load} (shared machine)"
    )
