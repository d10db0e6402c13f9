"""Seed-aware statistics for comparing arms (scipy's t-tests, never hand-rolled formulas).

* **Mean and CI** of an arm's metric: Student-t interval over seeds (``ttest_1samp``'s
  ``confidence_interval``). With one run there is no interval (``None``).
* **Δ = arm − baseline** as a :class:`Sample`:
  - ``paired`` when both arms share >= 2 seeds: seed ``k`` of both arms sees the same data
    order and init noise, so the per-seed differences cancel that shared noise
    (``ttest_rel`` / ``ttest_1samp`` on the differences);
  - ``welch`` otherwise (``ttest_ind(equal_var=False)``, Welch–Satterthwaite CI);
  - ``exact`` when every paired difference is the same number (params, FLOPs, KV bytes): a
    deterministic metric, a fact rather than a measurement;
  - ``none`` when there is too little data for any test.
* :func:`p_value` tests Δ against a shifted null (``Δ = δ``) one- or two-sided, which is what
  the non-inferiority and equivalence tests of ``runs/inference.py`` need.
* **LR sensitivity** (Wortsman et al. 2023): over an arm's LR grid,
  ``mean_lr[min(final(lr), loss_at_init)] - min_lr final(lr)``, where ``final(lr)`` is the
  seed mean and diverged runs count as ``loss_at_init``.

scipy is imported inside the functions so importing this module stays cheap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MIN_SCIPY = (1, 11)  # TtestResult.confidence_interval for ttest_ind


@dataclass
class MeanCI:
    n: int
    mean: float | None
    std: float | None
    ci_low: float | None
    ci_high: float | None


@dataclass
class Diff:
    test: str  # "paired" | "welch" | "exact" | "none"
    n_pairs: int
    mean: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None


@dataclass
class Sample:
    """The data behind Δ = arm − baseline."""

    kind: str  # "paired" | "welch" | "exact" | "none"
    arm: np.ndarray
    base: np.ndarray
    diffs: np.ndarray | None = None  # per shared seed, when paired or exact

    @property
    def mean(self) -> float | None:
        if self.diffs is not None and len(self.diffs):
            return float(self.diffs.mean())
        if len(self.arm) and len(self.base):
            return float(self.arm.mean() - self.base.mean())
        return None

    @property
    def testable(self) -> bool:
        return self.kind in ("paired", "welch")

    def se_and_df(self) -> tuple[float | None, float | None]:
        """Standard error of Δ and its degrees of freedom (None when untestable)."""
        if self.kind == "paired":
            n = len(self.diffs)
            return float(self.diffs.std(ddof=1)) / math.sqrt(n), n - 1
        if self.kind == "welch":
            va, vb = self.arm.var(ddof=1) / len(self.arm), self.base.var(ddof=1) / len(self.base)
            df = (va + vb) ** 2 / (va**2 / (len(self.arm) - 1) + vb**2 / (len(self.base) - 1))
            return math.sqrt(va + vb), float(df)
        return None, None

    def unit_sd(self) -> float | None:
        """The sd of one seed's contribution to Δ: per-pair sd, or sqrt(s_a² + s_b²)."""
        if self.kind == "paired":
            return float(self.diffs.std(ddof=1))
        if self.kind == "welch":
            return math.sqrt(float(self.arm.var(ddof=1) + self.base.var(ddof=1)))
        return None


def require_scipy() -> None:
    """One clear line instead of an AttributeError deep in a test on an old scipy."""
    import scipy

    have = tuple(int(x) for x in scipy.__version__.split(".")[:2])
    if have < MIN_SCIPY:
        raise RuntimeError(f"archlab needs scipy >= 1.11 (found {scipy.__version__})")


def _clean(x) -> float | None:
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
    from scipy import stats

    x = _finite_array(values)
    n = len(x)
    if n == 0:
        return MeanCI(0, None, None, None, None)
    mean = float(x.mean())
    if n == 1:
        return MeanCI(1, mean, None, None, None)
    std = float(x.std(ddof=1))
    if _is_zero(std, mean):
        return MeanCI(n, mean, std, mean, mean)
    ci = stats.ttest_1samp(x, 0.0).confidence_interval(1 - alpha)
    return MeanCI(n, mean, std, float(ci.low), float(ci.high))


def sample(arm: dict, base: dict) -> Sample:
    """``arm``/``base`` map seed -> value. Paired if >= 2 shared seeds, else Welch."""
    seeds = [s for s in arm if s in base]
    a_all = _finite_array(arm.values())
    b_all = _finite_array(base.values())
    if len(seeds) >= 2:
        a = np.asarray([arm[s] for s in seeds], dtype=float)
        b = np.asarray([base[s] for s in seeds], dtype=float)
        d = a - b
        kind = "exact" if _is_zero(float(d.std(ddof=1)), float(d.mean())) else "paired"
        return Sample(kind, a, b, d)
    if len(a_all) >= 2 and len(b_all) >= 2:
        va, vb = a_all.var(ddof=1), b_all.var(ddof=1)
        if not _is_zero(math.sqrt(va + vb), float(a_all.mean() - b_all.mean())):
            return Sample("welch", a_all, b_all)
    return Sample("none", a_all, b_all)


def p_value(s: Sample, null: float = 0.0, alternative: str = "two-sided") -> float | None:
    """p of the t-test of H0: Δ = ``null`` against ``alternative`` ("greater": Δ > null)."""
    from scipy import stats

    if s.kind == "paired":
        return _clean(stats.ttest_1samp(s.diffs, null, alternative=alternative).pvalue)
    if s.kind == "welch":
        res = stats.ttest_ind(s.arm - null, s.base, equal_var=False, alternative=alternative)
        return _clean(res.pvalue)
    if s.kind == "exact":  # no noise: the null is rejected exactly when the number says so
        m = s.mean
        hit = {"greater": m > null, "less": m < null}.get(alternative, m != null)
        return 0.0 if hit else 1.0
    return None


def ci(s: Sample, level: float) -> tuple[float | None, float | None]:
    """Two-sided ``level`` CI of Δ (a point for exact samples, ``None`` when untestable)."""
    from scipy import stats

    require_scipy()
    if s.kind == "paired":
        c = stats.ttest_rel(s.arm, s.base).confidence_interval(level)
    elif s.kind == "welch":
        c = stats.ttest_ind(s.arm, s.base, equal_var=False).confidence_interval(level)
    elif s.kind == "exact":
        return s.mean, s.mean
    else:
        return None, None
    return _clean(c.low), _clean(c.high)


def compare_to_baseline(arm: dict, base: dict, alpha: float = 0.05) -> Diff:
    """Δ with its two-sided (1-alpha) CI and two-sided p; p is None for exact differences."""
    s = sample(arm, base)
    lo, hi = ci(s, 1 - alpha) if s.kind != "exact" else (None, None)
    p = p_value(s) if s.testable else None
    n_pairs = len(s.diffs) if s.diffs is not None else 0
    return Diff(s.kind if s.kind != "exact" else "paired", n_pairs, s.mean, lo, hi, p)


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


def paired_window_se(arm: dict, base: dict) -> float | None:
    """Evaluation noise of Δ: ``arm``/``base`` map seed -> per-window val losses (same windows).

    Per shared seed, the standard error of the mean per-window difference; combined over the
    seeds as the standard error of the seed mean of Δ. None without shared window losses.
    """
    variances = []
    for seed, a in arm.items():
        b = base.get(seed)
        if b is None or len(a) != len(b) or len(a) < 2:
            continue
        d = np.asarray(a, float) - np.asarray(b, float)
        variances.append(d.var(ddof=1) / len(d))
    if not variances:
        return None
    return float(math.sqrt(np.mean(variances) / len(variances)))
