"""The run-directory contract: what every run writes, and what compare/reproduce read.

<run_dir>/config.yaml    the resolved config (knobs as plain values)
<run_dir>/metrics.jsonl  one JSON object per logged step (train and val lines)
<run_dir>/summary.json   status, steps, tokens, losses, params, tokens/s, seed, overrides, …

(``metrics.jsonl`` is written by ``train.loggers.JsonlLogger``; this module has no Lightning.)
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any


def plain(v: Any) -> Any:
    """A metric or summary value as plain JSON (tensors to numbers, NaN/inf to strings)."""
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)  # JSON has no NaN/inf: "nan", "inf"
    return v


def write_json(path: Path, obj: dict) -> None:
    """Atomic write: a reader never sees half a file."""
    tmp = Path(f"{path}.tmp{os.getpid()}")
    tmp.write_text(json.dumps({k: plain(v) for k, v in obj.items()}, indent=2) + "\n")
    os.replace(tmp, path)


def read_summary(run_dir: Path) -> dict | None:
    try:
        return json.loads((Path(run_dir) / "summary.json").read_text())
    except (OSError, ValueError):
        return None
