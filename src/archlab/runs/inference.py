"""The test that matches the claim: superiority, non-inferiority, equivalence (TOST), Holm.

Every decision is about Δ = arm − baseline, oriented so that a positive ``gain`` is the
claimed good direction (``direction = -1`` when lower is better), with a smallest effect of
interest δ > 0 fixed before any run (never in units of the measured noise).

| test | holds when | fails ("not reproduced") when |
|---|---|---|
| superior | one-sided (1−α) lower bound of the gain > 0 | two-sided (1−α) CI wholly below 0, or wholly inside (−δ, +δ) |
| non_inferior | one-sided (1−α) upper bound of the cost < δ | one-sided (1−α) lower bound of the cost > δ |
| equivalent (TOST) | two-sided (1−2α) CI inside ±δ | two-sided (1−2α) CI wholly outside ±δ |

Anything else is inconclusive. Each decision carries ``p_fail``, the p-value of the test
that would declare failure, so a claim's failures can be Holm-adjusted across its checks
(:func:`holm`); passes need no correction (every required check must hold: an
intersection–union test is already at level α).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from archlab.runs.stats import Sample, ci, p_value

PASS, FAIL, UNKNOWN = "pass", "fail", "unknown"
POWER = 0.8


@dataclass
class Decision:
    status: str
    why: str
    p_fail: float | None = None  # p of the failure test (Holm-adjusted across a claim)
    p_hold: float | None = None  # p of the test that makes the check hold
    numbers: dict = field(default_factory=dict)


def oriented(s: Sample, direction: int) -> Sample:
    """The sample with values multiplied by ``direction`` (+1: higher is the good side)."""
    flip = float(direction)
    diffs = None if s.diffs is None else s.diffs * flip
    return Sample(s.kind, s.arm * flip, s.base * flip, diffs)


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4g}"


def _min_p(*ps: float | None) -> float | None:
    vals = [p for p in ps if p is not None]
    return min(vals) if vals else None


def superior(s: Sample, direction: int, delta: float | None, alpha: float) -> Decision:
    g = oriented(s, direction)
    if g.kind == "none":
        return Decision(UNKNOWN, "too few runs for a test")
    lo1, _ = ci(g, 1 - 2 * alpha)  # one-sided (1-α) lower bound of the gain
    lo2, hi2 = ci(g, 1 - alpha)
    p_hold = p_value(g, 0.0, "greater")
    p_wrong = _times2(p_value(g, 0.0, "less"))  # the two-sided CI wholly below 0
    p_null = None
    if delta:  # the two-sided CI wholly inside (-δ, +δ): demonstrably no effect of interest
        p_null = _times2(max(p_value(g, delta, "less"), p_value(g, -delta, "greater")))
    nums = {"gain_bound_low": lo1, "ci_two_sided": [lo2, hi2]}
    if lo1 is not None and lo1 > 0:  # the bound in Δ's own units and sign, for the reader
        why = f"one-sided {1 - alpha:.0%} bound of Δ {_fmt(direction * lo1)} excludes 0"
        return Decision(PASS, why, None, p_hold, nums)
    p_fail = _min_p(p_wrong, p_null)
    if hi2 is not None and hi2 < 0:
        return Decision(FAIL, "CI wholly on the wrong side", p_fail, p_hold, nums)
    if delta and lo2 is not None and -delta < lo2 and hi2 < delta:
        return Decision(
            FAIL, f"CI inside ±{_fmt(delta)}: no effect of interest", p_fail, p_hold, nums
        )
    return Decision(UNKNOWN, "CI includes 0 and reaches beyond the margin", p_fail, p_hold, nums)


def non_inferior(s: Sample, direction: int, delta: float | None, alpha: float) -> Decision:
    """The arm costs less than δ (cost = −gain, positive = worse)."""
    if delta is None:
        return Decision(UNKNOWN, "no margin")
    g = oriented(s, direction)
    if g.kind == "none":
        return Decision(UNKNOWN, "too few runs for a test")
    lo, hi = ci(g, 1 - 2 * alpha)  # one-sided (1-α) bounds of the gain
    cost_low, cost_high = -hi, -lo
    p_hold = p_value(g, -delta, "greater")
    p_fail = p_value(g, -delta, "less")
    nums = {"cost_bounds": [cost_low, cost_high]}
    if cost_high < delta:
        why = f"cost upper bound {_fmt(cost_high)} < {_fmt(delta)}"
        return Decision(PASS, why, p_fail, p_hold, nums)
    if cost_low > delta:
        why = f"cost lower bound {_fmt(cost_low)} > {_fmt(delta)}"
        return Decision(FAIL, why, p_fail, p_hold, nums)
    why = f"cost bounds [{_fmt(cost_low)}, {_fmt(cost_high)}] straddle {_fmt(delta)}"
    return Decision(UNKNOWN, why, p_fail, p_hold, nums)


def equivalent(s: Sample, delta: float | None, alpha: float) -> Decision:
    """TOST: the (1-2α) CI of Δ inside ±δ."""
    if delta is None:
        return Decision(UNKNOWN, "no margin")
    if s.kind == "none":
        return Decision(UNKNOWN, "too few runs for a test")
    lo, hi = ci(s, 1 - 2 * alpha)
    p_hold = max(p_value(s, -delta, "greater"), p_value(s, delta, "less"))
    p_fail = min(p_value(s, delta, "greater"), p_value(s, -delta, "less"))
    nums = {"ci_tost": [lo, hi], "tost_level": 1 - 2 * alpha}
    level = f"{1 - 2 * alpha:.0%}"
    if -delta < lo and hi < delta:
        return Decision(PASS, f"{level} CI inside ±{_fmt(delta)}", p_fail, p_hold, nums)
    if lo > delta or hi < -delta:
        return Decision(FAIL, f"{level} CI wholly outside ±{_fmt(delta)}", p_fail, p_hold, nums)
    return Decision(UNKNOWN, f"{level} CI overlaps ±{_fmt(delta)}", p_fail, p_hold, nums)


def _times2(p: float | None) -> float | None:
    return None if p is None else min(1.0, 2 * p)


def holm(pvalues: list[float | None]) -> list[float | None]:
    """Holm–Bonferroni adjusted p-values (None stays None and does not count in m)."""
    idx = sorted((i for i, p in enumerate(pvalues) if p is not None), key=lambda i: pvalues[i])
    m, out, running = len(idx), list(pvalues), 0.0
    for rank, i in enumerate(idx):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out


def detectable(s: Sample, alpha: float, two_sided: bool = False, power: float = POWER):
    """Minimum detectable effect at the seeds used (one-sided α, given power)."""
    from scipy import stats

    se, df = s.se_and_df()
    if se is None or df is None or df <= 0:
        return None
    a = alpha / 2 if two_sided else alpha
    return float((stats.t.ppf(1 - a, df) + stats.t.ppf(power, df)) * se)


def seeds_needed(s: Sample, delta: float | None, alpha: float, power: float = POWER):
    """Seeds per arm so that an effect of δ is detected with ``power`` (normal approx. + 2)."""
    from scipy import stats

    sd = s.unit_sd()
    if sd is None or not delta:
        return None
    z = stats.norm.ppf(1 - alpha) + stats.norm.ppf(power)
    return math.ceil((z * sd / delta) ** 2 + 2)


# the test a check kind runs, for sizing its seeds (kinds not listed are not sized: facts)
SIZED_TESTS = {
    "superior": "superior",
    "lower": "superior",
    "higher": "superior",
    "faster": "superior",
    "lr_sensitivity_lower": "superior",
    "non_inferior": "non_inferior",
    "small_cost": "non_inferior",
    "equivalent": "equivalent",
}


def sd_upper_bound(sd: float, n_values: int, confidence: float) -> float:
    """One-sided upper confidence bound of a normal SD estimated from ``n_values`` values:
    ``sd · sqrt((n−1) / χ²_{1−confidence}(n−1))`` (e.g. ×2.117 at 80% from 3 values)."""
    from scipy import stats

    df = n_values - 1
    return float(sd * math.sqrt(df / stats.chi2.ppf(1 - confidence, df)))


def paired_seeds(
    sigma: float, delta: float, test: str, alpha: float = 0.05, power: float = POWER
) -> int:
    """Seeds for a paired test of kind ``test`` with per-pair SD σ and margin δ (normal
    approximation + 2 for the t's heavier tails): ``⌈((z₁₋α + z_b)·σ/δ)²⌉ + 2`` with
    ``z_b = z_power`` for ``superior`` (power to detect a true Δ of δ) and ``non_inferior``
    (power to hold when the true Δ is 0), and ``z_b = z_{1−(1−power)/2}`` for ``equivalent``
    (TOST at a true Δ of 0: both one-sided tests must reject)."""
    from scipy import stats

    if test not in ("superior", "non_inferior", "equivalent"):
        raise ValueError(f"unknown test {test!r}")
    beta = 1 - power
    z_b = stats.norm.ppf(1 - beta / 2) if test == "equivalent" else stats.norm.ppf(power)
    z = stats.norm.ppf(1 - alpha) + z_b
    return math.ceil((z * sigma / delta) ** 2) + 2


def noise_summary(values: list[float]) -> float | None:
    """Std over seeds (ddof=1), None with fewer than 2 values."""
    arr = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    return float(arr.std(ddof=1)) if len(arr) >= 2 else None
