"""The run-directory contract: what every run writes, and what compare/reproduce read.

<run_dir>/config.yaml    the resolved config (knobs as plain values)
<run_dir>/metrics.jsonl  one JSON object per logged step (train and val lines)
<run_dir>/summary.json   status, steps, tokens, losses, params, tokens/s, seed, overrides, …
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers.logger import Logger, rank_zero_experiment
from lightning.pytorch.utilities import rank_zero_only


def _plain(v: Any) -> Any:
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)  # JSON has no NaN/inf: "nan", "inf"
    return v


class JsonlLogger(Logger):
    """A Lightning logger writing ``metrics.jsonl``: one line per ``log_metrics`` call."""

    def __init__(self, run_dir: Path):
        super().__init__()
        self.path = Path(run_dir) / "metrics.jsonl"
        self._file = None

    @property
    def name(self) -> str:
        return "jsonl"

    @property
    def version(self) -> None:
        return None  # one run per directory (and no "v_num" in the progress bar)

    @property
    @rank_zero_experiment
    def experiment(self):
        if self._file is None:
            self._file = open(self.path, "a", buffering=1)  # noqa: SIM115 (closed in finalize)
        return self._file

    @rank_zero_only
    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        row = {"step": step, **{k: _plain(v) for k, v in metrics.items()}}
        self.experiment.write(json.dumps(row) + "\n")

    @rank_zero_only
    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass  # config.yaml holds the config

    @rank_zero_only
    def finalize(self, status: str) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def write_json(path: Path, obj: dict) -> None:
    """Atomic write: a reader never sees half a file."""
    tmp = Path(f"{path}.tmp{os.getpid()}")
    tmp.write_text(json.dumps({k: _plain(v) for k, v in obj.items()}, indent=2) + "\n")
    os.replace(tmp, path)


def read_summary(run_dir: Path) -> dict | None:
    try:
        return json.loads((Path(run_dir) / "summary.json").read_text())
    except (OSError, ValueError):
        return None
