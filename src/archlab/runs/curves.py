"""Loss curves per arm, aligned across seeds.

Each seed's curve is linearly interpolated onto the union of the logged steps of the arm's
seeds (only inside that seed's own step range, never extrapolated). At every grid step the
arm curve is the mean over the seeds present, with a min-max band over those seeds.
For the ``tokens``/``flops``/``time`` x-axes, each seed's x value is interpolated onto the
same step grid and averaged over seeds, so one step of the arm has one x position.
``flops`` comes from the metric lines, else ``tokens * summary.flops_per_token``; an axis
missing from any seed of an arm is dropped for that arm.
"""

from __future__ import annotations

import numpy as np

from archlab.runs.load import RunRecord
from archlab.runs.values import number

X_AXES = ("step", "tokens", "flops", "time")
LOSS_METRICS = ("train/loss", "val/loss")


COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]


def color(i: int) -> str:
    """The i-th arm's colour, the same in every figure and page."""
    return COLORS[i % len(COLORS)]


def run_series(record: RunRecord, metric: str) -> dict[str, np.ndarray] | None:
    """``{axis: x values, "y": metric}`` for one run (by increasing step; last line wins)."""
    by_step: dict[float, dict] = {}
    for line in record.metrics:
        step, y = number(line.get("step")), number(line.get(metric))
        if step is not None and y is not None:
            by_step[step] = line
    if not by_step:
        return None
    steps = sorted(by_step)
    lines = [by_step[s] for s in steps]
    out = {"step": np.asarray(steps), "y": np.asarray([float(ln[metric]) for ln in lines])}
    fpt = number(record.summary.get("flops_per_token"))
    for axis in ("tokens", "time", "flops"):
        values = [number(ln.get(axis)) for ln in lines]
        if axis == "flops" and any(v is None for v in values) and fpt is not None:
            values = [
                None if t is None else t * fpt for t in (number(ln.get("tokens")) for ln in lines)
            ]
        if all(v is not None for v in values):
            out[axis] = np.asarray(values, dtype=float)
    return out


def arm_curve(records: list[RunRecord], metric: str) -> dict[str, list] | None:
    """Seed-aligned mean curve with min/max band; None if no run logged ``metric``.

    Returns lists (JSON-ready): ``step`` and any available x axes, ``mean``, ``lo``, ``hi``
    and ``n`` (number of seeds contributing at each step).
    """
    series = [s for s in (run_series(r, metric) for r in records) if s is not None]
    if not series:
        return None
    grid = np.unique(np.concatenate([s["step"] for s in series]))

    def on_grid(s: dict, key: str) -> np.ndarray:
        vals = np.interp(grid, s["step"], s[key])
        vals[(grid < s["step"][0]) | (grid > s["step"][-1])] = np.nan
        return vals

    ys = np.vstack([on_grid(s, "y") for s in series])
    out: dict[str, list] = {"step": grid.tolist()}
    for axis in ("tokens", "flops", "time"):
        if all(axis in s for s in series):
            out[axis] = np.nanmean(np.vstack([on_grid(s, axis) for s in series]), axis=0).tolist()
    out["mean"] = np.nanmean(ys, axis=0).tolist()
    out["lo"] = np.nanmin(ys, axis=0).tolist()
    out["hi"] = np.nanmax(ys, axis=0).tolist()
    out["n"] = np.isfinite(ys).sum(axis=0).astype(int).tolist()
    return out
