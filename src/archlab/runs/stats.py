"""Seed-aware statistics for comparing arms.

* **Mean and CI** of an arm's final validation loss: Student-t interval over seeds,
  ``mean +- t_{1-alpha/2, n-1} * s / sqrt(n)`` with ``s`` the sample std (ddof=1). With
  one run there is no interval (``None``).
* **Difference vs baseline** (``arm - baseline``; negative = lower loss = better):
  - when both arms share >= 2 seeds, a **paired t-test** on the shared seeds: seed ``k``
    of both arms sees the same data order and init noise, so the per-seed differences
    cancel that shared noise; the CI is the t-interval of the differences;
  - otherwise **Welch's t-test** (unequal variances), with the Welch-Satterthwaite
    degrees of freedom for the CI of the difference of means.
  When a test is undefined (too few runs, zero variance) p and the CI are ``None``.
* **Verdict**: ``better``/``worse`` when ``p < alpha``, else ``no significant difference``;
  ``n/a`` when no test is possible; ``unstable`` when any of the arm's seeds diverged
  (the test verdict on the surviving seeds is kept alongside).
* **LR sensitivity** (Wortsman et al. 2023): over an arm's LR grid,
  ``mean_lr[min(final(lr), loss_at_init)] - min_lr final(lr)``, where ``final(lr)`` is the
  seed mean and diverged runs count as ``loss_at_init``. 0 means every LR in the grid
  reaches the best loss; ``loss_at_init - best`` means only one LR trains at all.

scipy is imported inside the functions so importing this module stays cheap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass
class MeanCI:
    n: int
    mean: float | None
    std: float | None
    ci_low: float | None
    ci_high: float | None


@dataclass
class Diff:
    test: str  # "paired" | "welch" | "none"
    n_pairs: int
    mean: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None


def _clean(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _is_zero(spread: float, scale: float) -> bool:
    """Spread that is zero up to float round-off (e.g. a constant shift of 0.3 on every seed)."""
    return spread <= 1e-12 * max(1.0, abs(scale))


def _finite_array(values) -> np.ndarray:
    arr = np.asarray([v for v in values if v is not None], dtype=float)
    return arr[np.isfinite(arr)]


def mean_ci(values, alpha: float = 0.05) -> MeanCI:
    """Mean with a two-sided (1-alpha) Student-t interval; ``None`` fields where undefined."""
    from scipy import stats  # scipy (~0.3 s): only for the tests that need it

    x = _finite_array(values)
    n = len(x)
    if n == 0:
        return MeanCI(0, None, None, None, None)
    mean = float(x.mean())
    if n == 1:
        return MeanCI(1, mean, None, None, None)
    std = float(x.std(ddof=1))
    half = float(stats.t.ppf(1 - alpha / 2, n - 1)) * std / math.sqrt(n)
    return MeanCI(n, mean, std, mean - half, mean + half)


def paired_diff(arm: dict, base: dict, alpha: float = 0.05) -> Diff:
    """Paired t-test of ``arm[seed] - base[seed]`` over the seeds present in both dicts."""
    from scipy import stats  # scipy (~0.3 s): only for the tests that need it

    seeds = [s for s in arm if s in base]
    d = np.asarray([arm[s] - base[s] for s in seeds], dtype=float)
    ci = mean_ci(d, alpha)
    p = None
    if ci.std is not None and _is_zero(ci.std, ci.mean):  # identical differences: t undefined
        ci.ci_low = ci.ci_high = None
    elif ci.std is not None:
        p = _clean(stats.ttest_rel([arm[s] for s in seeds], [base[s] for s in seeds]).pvalue)
    return Diff("paired", len(seeds), ci.mean, ci.ci_low, ci.ci_high, p)


def welch_diff(a, b, alpha: float = 0.05) -> Diff:
    """Welch's t-test of mean(a) - mean(b), with the Welch-Satterthwaite CI."""
    from scipy import stats  # scipy (~0.3 s): only for the tests that need it

    x, y = _finite_array(a), _finite_array(b)
    if len(x) == 0 or len(y) == 0:
        return Diff("none", 0, None, None, None, None)
    mean = float(x.mean() - y.mean())
    if len(x) < 2 or len(y) < 2:
        return Diff("none", 0, mean, None, None, None)
    va, vb = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    se = math.sqrt(va + vb)
    if _is_zero(se, mean):
        return Diff("welch", 0, mean, None, None, None)
    df = (va + vb) ** 2 / (va**2 / (len(x) - 1) + vb**2 / (len(y) - 1))
    half = float(stats.t.ppf(1 - alpha / 2, df)) * se
    p = _clean(stats.ttest_ind(x, y, equal_var=False).pvalue)
    return Diff("welch", 0, mean, mean - half, mean + half, p)


def compare_to_baseline(arm: dict, base: dict, alpha: float = 0.05) -> Diff:
    """``arm``/``base`` map seed -> final loss. Paired if >= 2 shared seeds, else Welch."""
    if sum(1 for s in arm if s in base) >= 2:
        return paired_diff(arm, base, alpha)
    return welch_diff(list(arm.values()), list(base.values()), alpha)


def verdict(diff: Diff, alpha: float, diverged: int) -> tuple[str, str]:
    """``(verdict, test_verdict)``: the test outcome, overridden by ``unstable`` if diverged."""
    if diff.p_value is None or diff.mean is None:
        test = "n/a"
    elif diff.p_value < alpha:
        test = "better" if diff.mean < 0 else "worse"
    else:
        test = "no significant difference"
    return ("unstable" if diverged else test), test


def lr_sensitivity(finals_by_lr: dict[float, list], loss_at_init: float | None) -> float | None:
    """Wortsman et al. (2023) LR sensitivity of one arm.

    ``finals_by_lr[lr]`` lists the final losses of that LR's seeds, ``None`` for a diverged
    run (counted as ``loss_at_init``); ``final(lr)`` is their mean. Returns None when
    ``loss_at_init`` is unknown or every run diverged (nothing trained to compare with).
    """
    if loss_at_init is None or not math.isfinite(loss_at_init) or not finals_by_lr:
        return None
    runs = [v for seeds in finals_by_lr.values() for v in seeds]
    if all(v is None or not math.isfinite(v) for v in runs):
        return None
    finals = [
        float(np.mean([loss_at_init if v is None or not math.isfinite(v) else v for v in seeds]))
        for seeds in finals_by_lr.values()
    ]
    return float(np.mean([min(f, loss_at_init) for f in finals]) - min(min(finals), loss_at_init))
