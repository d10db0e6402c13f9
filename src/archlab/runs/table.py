"""``compare.csv`` (one row per run, for pandas users) and report paths relative to the report."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

from archlab.runs.arms import flatten, format_value

METRIC_COLUMNS = (
    "status",
    "val_loss",
    "val_loss_se",
    "train_loss",
    "steps",
    "tokens",
    "flops_per_token",
    "tokens_per_sec",
    "params",
    "elapsed_sec",
)


def relative(path: str, start: Path) -> str:
    """``path`` relative to ``start`` (the report's folder), never an absolute machine path."""
    try:
        return os.path.relpath(Path(path).resolve(), Path(start).resolve())
    except ValueError:  # another drive (Windows)
        return Path(path).name


def relativize(obj: Any, start: Path) -> Any:
    """A copy of a compare result with every ``source``/``sources`` made relative to ``start``."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if k == "source" and isinstance(v, str):
                out[k] = relative(v, start)
            elif k == "sources" and isinstance(v, list):
                out[k] = [relative(x, start) for x in v]
            else:
                out[k] = relativize(v, start)
        return out
    if isinstance(obj, list):
        return [relativize(v, start) for v in obj]
    return obj


def csv_rows(analysis, out: Path) -> list[dict[str, Any]]:
    keys = analysis.result["setup"]["arm_keys"] + ["optim.lr"]
    rows = []
    for arm in analysis.arms:
        for run in arm.runs:
            flat = flatten(run.config)
            row = {"arm": arm.label, "run": relative(run.source, out), "seed": run.seed}
            row.update({k: format_value(flat.get(k)) for k in keys})
            row.update({k: run.summary.get(k) for k in METRIC_COLUMNS})
            row["status"] = run.status
            row["loss_at_init"] = run.loss_at_init()
            rows.append(row)
    return rows


def write_csv(analysis, out: Path) -> Path:
    rows = csv_rows(analysis, out)
    path = Path(out) / "compare.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["arm"])
        writer.writeheader()
        writer.writerows(rows)
    return path
