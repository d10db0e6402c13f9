"""Scale ladders: does an arm's advantage grow or shrink with compute?

A sweep whose arms also differ in size or budget keys (``RUNG_KEYS``: layers, width, heads,
``train.budget``, ``train.max_steps``) is a ladder: the size/budget keys, and any key that
moves with them (one value per rung: block size, warmup), name the rungs; the keys that vary
within a rung name the arms. For each arm and rung: final val loss (its compared runs: the
tuned LR on confirm seeds when the LR is swept) against training compute
``C = FLOPs/token × tokens``. Then:

* per rung, the seed-paired gap to the baseline arm with its CI;
* the gap's trend against log10 C (least-squares slope over every seed's gap, with its CI):
  positive = the arm's advantage shrinks with compute (for loss, lower is better);
* a fitted curve per arm: log-linear ``L = a + b·log10 C`` below 5 rungs (no extrapolation);
  the saturating power law ``L = E + A·C^-α`` only with >= 5 rungs, with its R², and then an
  extrapolation one decade past the last rung, labelled as such.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from archlab.runs import stats
from archlab.runs.arms import flatten, format_value

RUNG_KEYS = (
    "model.n_layers",
    "model.d_model",
    "model.n_heads",
    "model.n_kv_heads",
    "model.d_ff",
    "train.budget",
    "train.max_steps",
)
POWER_LAW_MIN_RUNGS = 5


def split_keys(arm_keys: list[str], runs=()) -> tuple[list[str], list[str]]:
    """(rung keys, arm keys) among the keys that differ across the runs. A key that never
    varies within a rung of ``runs`` (a rung's block size, warmup or eval cadence) goes with
    the rung: only keys that vary within a rung name the arms."""
    size = [k for k in arm_keys if k in RUNG_KEYS]
    rest = [k for k in arm_keys if k not in RUNG_KEYS]
    if size and runs:
        per_rung: dict[tuple, dict[str, set]] = {}
        for run in runs:
            values = per_rung.setdefault(_key(run, size), {})
            for k, v in zip(rest, _key(run, rest)):
                values.setdefault(k, set()).add(v)
        rides = {k for k in rest if all(len(v[k]) == 1 for v in per_rung.values())}
        if rest and rides == set(rest):  # every arm is alone at its "rung": the size keys
            return [], arm_keys  # define arms (gqa's n_kv_heads, shape's d_ff), not rungs
        size = [k for k in arm_keys if k in size or k in rides]
        rest = [k for k in rest if k not in rides]
    return size, rest


def rung_baselines(arms, arm_keys: list[str]) -> list[int]:
    """For each arm, the index of the arm it is compared with: the baseline (``arms[0]``), or
    on a ladder the baseline arm at the same rung (a rung's baseline is its own)."""
    rung_keys, other = split_keys(arm_keys, [r for a in arms for r in a.runs])
    if not rung_keys or not arms:
        return [0] * len(arms)

    def ident(arm, keys):
        return tuple(format_value(arm.values.get(k)) for k in keys)

    base_name = ident(arms[0], other)
    at_rung = {ident(a, rung_keys): i for i, a in enumerate(arms) if ident(a, other) == base_name}
    bases = [at_rung.get(ident(a, rung_keys), 0) for a in arms]
    crossed = len(at_rung) >= 2 and any(b != i for i, b in enumerate(bases) if b != 0)
    return bases if crossed else [0] * len(arms)


def compute_of(run) -> float | None:
    fpt, tokens = run.summary.get("flops_per_token"), run.summary.get("tokens")
    if isinstance(fpt, (int, float)) and isinstance(tokens, (int, float)) and fpt > 0:
        return float(fpt) * float(tokens)
    return None


def _key(run, keys: list[str]) -> tuple:
    flat = flatten(run.config)
    return tuple(format_value(flat.get(k)) for k in keys)


def arm_label(run, keys: list[str]) -> str:
    """The arm's name without its rung: ``mlp=gelu``."""
    return ", ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in zip(keys, _key(run, keys))) or "all"


def _cells(compared, rung_keys, arm_keys, scored) -> tuple[dict, dict]:
    """(arm label, rung id) -> {seed: loss}; compute per (arm, rung) and per rung (means)."""
    cells: dict[tuple, dict] = {}
    compute: dict[tuple, list[float]] = {}
    for runs in compared:
        for run in runs:
            cell = (arm_label(run, arm_keys), _key(run, rung_keys))
            loss = scored(run)
            if loss is not None:
                cells.setdefault(cell, {})[run.seed] = loss
            c = compute_of(run)
            if c:
                compute.setdefault(cell, []).append(c)
                compute.setdefault(cell[1], []).append(c)
    return cells, {k: float(np.mean(v)) for k, v in compute.items()}


def _gap_trend(gaps: list[tuple[float, float]], alpha: float) -> dict[str, Any]:
    """Slope of gap vs log10 C over every (rung, seed) gap, with its (1-alpha) CI."""
    from scipy import stats as sps

    xs = np.log10([c for c, _ in gaps])
    ys = np.asarray([g for _, g in gaps])
    if len(set(xs)) < 2 or len(xs) < 3:
        return {"slope": None, "ci": [None, None], "n": len(xs)}
    fit = sps.linregress(xs, ys)
    half = float(sps.t.ppf(1 - alpha / 2, len(xs) - 2) * fit.stderr)
    return {"slope": float(fit.slope), "ci": [fit.slope - half, fit.slope + half], "n": len(xs)}


def _power_law(c: np.ndarray, y: np.ndarray) -> dict[str, Any] | None:
    from scipy.optimize import curve_fit

    x = c / c.min()  # scaled for a well-conditioned fit

    def f(x, e, a, alpha):
        return e + a * x ** (-alpha)

    try:
        p, _ = curve_fit(f, x, y, p0=(y.min() * 0.9, y.max() - y.min() * 0.9, 0.3), maxfev=20000)
    except (RuntimeError, ValueError):
        return None
    pred = f(x, *p)
    r2 = 1 - float(np.sum((y - pred) ** 2) / max(np.sum((y - y.mean()) ** 2), 1e-300))
    e, a, alpha = (float(v) for v in p)
    return {"kind": "power law", "E": e, "A": a * c.min() ** alpha, "alpha": alpha, "r2": r2}


def fit_curve(points: list[tuple[float, float]]) -> dict[str, Any] | None:
    """Log-linear below 5 rungs, the saturating power law with >= 5 (see the docstring)."""
    from scipy import stats as sps

    rungs = sorted({c for c, _ in points})
    if len(rungs) < 2:
        return None
    c = np.asarray([p[0] for p in points])
    y = np.asarray([p[1] for p in points])
    if len(rungs) >= POWER_LAW_MIN_RUNGS:
        law = _power_law(c, y)
        if law is not None:
            return law
    fit = sps.linregress(np.log10(c), y)
    return {
        "kind": "log-linear",
        "a": float(fit.intercept),
        "b": float(fit.slope),
        "r2": float(fit.rvalue**2),
    }


def curve_values(fit: dict, c: np.ndarray) -> np.ndarray:
    if fit["kind"] == "power law":
        return fit["E"] + fit["A"] * c ** (-fit["alpha"])
    return fit["a"] + fit["b"] * np.log10(c)


def analyze_ladder(arms, compared, arm_keys, scored, alpha: float):
    """The ladder section of compare.json, or None when the sweep is not a ladder.
    ``arms[0]`` is the baseline; its arm keys (without the rung) name the baseline arm."""
    rung_keys, other = split_keys(arm_keys, [r for runs in compared for r in runs])
    if not rung_keys or not arms or not arms[0].runs:
        return None
    baseline_label = arm_label(arms[0].runs[0], other)
    cells, compute = _cells(compared, rung_keys, other, scored)
    # orders that do not depend on a set's (per-process, hash-seeded) iteration: rungs by
    # compute, arms baseline first and then as the runs list them
    rungs = sorted(dict.fromkeys(r for _, r in cells if r in compute), key=compute.get)
    labels = sorted(dict.fromkeys(lab for lab, _ in cells), key=lambda lab: lab != baseline_label)
    if len(rungs) < 2:
        return None
    base = labels[0]
    out = {"rung_keys": rung_keys, "arm_keys": other, "baseline": base, "rungs": [], "arms": {}}
    for r in rungs:
        out["rungs"].append({"id": dict(zip(rung_keys, r)), "compute": compute[r]})
    for lab in labels:
        out["arms"][lab] = _arm_ladder(lab, base, cells, rungs, compute, alpha)
    return out


def _arm_ladder(lab, base, cells, rungs, compute, alpha) -> dict[str, Any]:
    per_rung, points, gaps = [], [], []
    for r in rungs:
        vals = cells.get((lab, r), {})
        ci = stats.mean_ci(list(vals.values()), alpha)
        own = compute.get((lab, r), compute[r])  # this arm's FLOPs at this rung
        entry = {
            "compute": own,
            "rung_compute": compute[r],
            "mean": ci.mean,
            "lo": min(vals.values(), default=None),
            "hi": max(vals.values(), default=None),
            "n": ci.n,
            "gap": None,
        }
        points += [(own, v) for v in vals.values()]
        if lab != base and vals and cells.get((base, r)):
            d = stats.compare_to_baseline(vals, cells[(base, r)], alpha)
            entry["gap"] = {"mean": d.mean, "ci": [d.ci_low, d.ci_high], "test": d.test}
            shared = [s for s in vals if s in cells[(base, r)]]
            gaps += [(compute[r], vals[s] - cells[(base, r)][s]) for s in shared]
        per_rung.append(entry)
    fit = fit_curve(points)
    row = {"rungs": per_rung, "fit": fit, "trend": _gap_trend(gaps, alpha) if gaps else None}
    if fit and fit["kind"] == "power law":
        top = max(compute[r] for r in rungs) * 10
        row["extrapolated"] = {
            "compute": top,
            "loss": float(curve_values(fit, np.asarray([top]))[0]),
        }
    return row


def trend_text(trend: dict | None) -> str:
    if not trend or trend["slope"] is None:
        return "no trend (too few rungs or seeds)"
    lo, hi = trend["ci"]
    if lo > 0:
        word = "arm − baseline rises with compute (the arm loses ground)"
    elif hi < 0:
        word = "arm − baseline falls with compute (the arm gains ground)"
    else:
        word = "no detectable trend with compute"
    return f"slope {trend['slope']:+.4f} per decade [{lo:+.4f}, {hi:+.4f}]: {word}"


def finite_or_none(x) -> float | None:
    return float(x) if isinstance(x, (int, float)) and math.isfinite(x) else None
