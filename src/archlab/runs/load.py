"""Read run records (the contract written by ``archlab train``) into memory.

A run directory holds ``config.yaml`` (resolved Hydra config), ``metrics.jsonl`` (one JSON
object per logged step) and ``summary.json`` (status, final losses, params, ...). A sweep
directory is any directory containing run directories at any depth: runs are found by
locating ``summary.json`` files. Unreadable runs are skipped with a warning, never fatal.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from archlab.errors import describe
from archlab.runs.values import finite as _finite

SUMMARY = "summary.json"
CONFIG = "config.yaml"
METRICS = "metrics.jsonl"


@dataclass
class RunRecord:
    """One training run: where it came from, its nested config, summary and metric lines."""

    source: str
    config: dict[str, Any]
    summary: dict[str, Any]
    metrics: list[dict[str, Any]] = field(default_factory=list)

    @property
    def status(self) -> str:
        return str(self.summary.get("status") or "completed")

    @property
    def seed(self) -> Any:
        seed = self.config.get("seed", self.summary.get("seed"))
        return seed if seed is not None else self.summary.get("seed")

    def final_val_loss(self) -> float | None:
        """``summary.val_loss``, else the last ``val/loss`` line; None if neither is finite."""
        value = self.summary.get("val_loss")
        if value is None:
            vals = [m["val/loss"] for m in self.metrics if _finite(m.get("val/loss"))]
            value = vals[-1] if vals else None
        return float(value) if _finite(value) else None

    def loss_at_init(self) -> float | None:
        """The first logged train loss (the loss of the untrained model, up to one log interval)."""
        for line in sorted(self.metrics, key=lambda m: m.get("step", 0)):
            if _finite(line.get("train/loss")):
                return float(line["train/loss"])
        return None


def _natural_key(path: Path) -> list:
    """Sort ``job2`` before ``job10`` (Hydra multirun numbers its job dirs 0, 1, ..., 10)."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]


def _metric_lines(run_dir: Path) -> list[str]:
    """``metrics.jsonl``, or a committed record's ``metrics.jsonl.gz``; [] when neither."""
    import gzip

    plain, packed = run_dir / METRICS, run_dir / f"{METRICS}.gz"
    if plain.exists():
        return plain.read_text().splitlines()
    if packed.exists():
        with gzip.open(packed, "rt") as f:
            return f.read().splitlines()
    return []


def load_run_dir(run_dir: Path) -> RunRecord:
    """Load one run directory; raises ``OSError``/``ValueError`` if a file is unreadable."""
    summary = json.loads((run_dir / SUMMARY).read_text())
    if not isinstance(summary, dict):
        raise ValueError(f"{SUMMARY} is not a JSON object")
    config_path = run_dir / CONFIG
    config = yaml.safe_load(config_path.read_text()) if config_path.exists() else {}
    if not isinstance(config, dict):
        raise ValueError(f"{CONFIG} is not a mapping")
    metrics: list[dict[str, Any]] = []
    for line in _metric_lines(run_dir):
        line = line.strip()
        if not line:
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a run killed mid-write leaves a truncated last line
        if isinstance(row, dict):
            metrics.append(row)
    return RunRecord(source=str(run_dir), config=config, summary=summary, metrics=metrics)


def find_runs(paths: list[str | Path], warn=print) -> list[RunRecord]:
    """Load every run under ``paths`` in the order given (each path's runs sorted by path).

    A path may be a run directory or a sweep directory. Directories without any
    ``summary.json`` and runs with unreadable files produce one warning line via ``warn``.
    """
    records: list[RunRecord] = []
    seen: set[Path] = set()
    for path in map(Path, paths):
        if not path.is_dir():
            warn(f"warning: {path} is not a directory, skipped")
            continue
        summaries = sorted(path.rglob(SUMMARY), key=_natural_key)
        if not summaries:
            warn(f"warning: no run (no {SUMMARY}) under {path}, skipped")
        for summary_path in summaries:
            run_dir = summary_path.parent.resolve()
            if run_dir in seen:
                continue
            seen.add(run_dir)
            try:
                records.append(load_run_dir(summary_path.parent))
            except (OSError, ValueError, yaml.YAMLError) as err:
                warn(f"warning: unreadable run {summary_path.parent}: {describe(err)}")
    return records
