"""Metrics from run records, and an arm's values at its (tuned) learning rate.

Metric specs:

* a summary.json key, dotted for nesting: ``val_loss`` (falls back to the last ``val/loss``
  line), ``tokens_per_sec``, ``kv_cache_bytes_per_token``, ``long_context.4x.gain``;
* ``<agg>:<metrics.jsonl key>``: ``last``, ``first``, ``max``, ``min``, ``mean``, ``absmax``,
  ``abs_last``, ``last<k>`` (mean of the last k values), e.g. ``max:attn/max_logit``;
* ``val_minus_train``: final val loss − mean of the last 3 train losses.

Survivorship: a diverged run is never dropped. For a loss metric it counts as its loss at
initialisation (an arm picked at an aggressive LR pays for the seeds that blew up).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from archlab.runs import stats
from archlab.runs.load import RunRecord

LOSS_METRICS = ("val_loss",)

_AGGS = {
    "last": lambda v: v[-1],
    "first": lambda v: v[0],
    "max": max,
    "min": min,
    "mean": lambda v: sum(v) / len(v),
    "absmax": lambda v: max(abs(x) for x in v),
    "abs_last": lambda v: abs(v[-1]),
}


def finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def aggregate(values: list[float], agg: str) -> float | None:
    if not values:
        return None
    if agg in _AGGS:
        return _AGGS[agg](values)
    if agg.startswith("last") and agg[4:].isdigit():
        tail = values[-int(agg[4:]) :]
        return sum(tail) / len(tail)
    raise ValueError(
        f"unknown aggregation {agg!r} (last, first, max, min, mean, absmax, abs_last, last<k>)"
    )


def metric_value(record: RunRecord, spec: str) -> float | None:
    """The value of metric ``spec`` for one run (None when it was not recorded)."""
    if ":" in spec:
        agg, key = spec.split(":", 1)
        rows = sorted(record.metrics, key=lambda m: m.get("step", 0))
        return aggregate([float(m[key]) for m in rows if finite(m.get(key))], agg)
    if spec == "val_loss":
        return record.final_val_loss()
    if spec == "val_minus_train":
        val = record.final_val_loss()
        train = metric_value(record, "last3:train/loss")
        return None if val is None or train is None else val - train
    node: Any = record.summary
    for part in spec.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return float(node) if finite(node) else None


def survivor_value(record: RunRecord, spec: str) -> float | None:
    """``metric_value``, except that a diverged run scores its loss at init on loss metrics."""
    if record.status == "diverged" and spec in LOSS_METRICS:
        return record.loss_at_init()
    return metric_value(record, spec)


def run_lr(record: RunRecord) -> float | None:
    lr = (record.config.get("optim") or {}).get("lr")
    return float(lr) if finite(lr) else None


def by_seed(pairs: list[tuple[Any, float]]) -> dict[Any, float]:
    acc: dict[Any, list[float]] = {}
    for seed, v in pairs:
        acc.setdefault(seed, []).append(v)
    return {s: sum(v) / len(v) for s, v in acc.items()}


@dataclass
class ArmData:
    """An arm's runs, the LR its comparisons use and the seeds they use (None: all)."""

    name: str
    runs: list[RunRecord]
    lr: float | None = None
    seeds: frozenset | None = None  # the confirm seeds of a tuned comparison

    def at_lr(self) -> list[RunRecord]:
        return [
            r
            for r in self.runs
            if (self.lr is None or run_lr(r) == self.lr)
            and (self.seeds is None or r.seed in self.seeds)
        ]

    def values(self, spec: str) -> tuple[dict[Any, float], int]:
        """seed -> metric value at the arm's LR and seeds, and the number of diverged runs."""
        runs = [r for r in self.at_lr() if r.status != "failed"]
        diverged = sum(r.status == "diverged" for r in runs)
        pairs = [(r.seed, survivor_value(r, spec)) for r in runs]
        return by_seed([(s, v) for s, v in pairs if v is not None]), diverged


def lr_sensitivity_by_seed(runs: list[RunRecord]) -> dict[Any, float]:
    """seed -> LR sensitivity over that seed's LR grid (Wortsman et al. 2023)."""
    per_seed: dict[Any, list[RunRecord]] = {}
    for r in runs:
        if r.status != "failed" and run_lr(r) is not None:
            per_seed.setdefault(r.seed, []).append(r)
    out = {}
    for seed, rs in per_seed.items():
        inits = [x for x in (r.loss_at_init() for r in rs) if x is not None]
        if len({run_lr(r) for r in rs}) < 2 or not inits:
            continue
        finals: dict[float, list] = {}
        for r in rs:
            final = None if r.status == "diverged" else r.final_val_loss()
            finals.setdefault(run_lr(r), []).append(final)
        value = stats.lr_sensitivity(finals, sum(inits) / len(inits))
        if value is not None:
            out[seed] = value
    return out
