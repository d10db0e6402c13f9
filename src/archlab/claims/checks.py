"""The checks of a claim's rule (a registry: one small function per kind) and the verdict.

Every check compares Δ = arm − baseline (seed-paired when >= 2 seeds are shared, else Welch)
against a smallest effect of interest δ (``margin``/``max_cost``: nats, or ``x%`` of
|baseline mean|; never in units of the measured noise). The statistics are in
``archlab.runs.inference``:

* ``superior`` (``direction: lower|higher``), with the shorthands ``lower``, ``higher`` and
  ``faster`` (``higher`` on ``tokens_per_sec``, speed ratio shown) and
  ``lr_sensitivity_lower`` (Wortsman et al.'s LR sensitivity per seed over the LR grid);
* ``non_inferior`` (costs less than δ; ``small_cost`` is its older name);
* ``equivalent`` (TOST: the 90% CI inside ±δ);
* ``below``: the arm's metric is below ``threshold`` (superiority against a constant);
* ``ratio_equals``: mean(arm)/mean(baseline) equals ``expected`` within ``tol`` — a **fact**.

A check whose Δ is the same number on every seed (analytic FLOPs, KV-cache bytes) is a fact as
well: reported, never counted as evidence for a verdict.

Verdict: **reproduced** when every required evidence check holds (an intersection–union test,
already at level α); **not reproduced** when a required check fails after Holm's adjustment of
the failure p-values across the claim's required checks; **inconclusive** otherwise.
Inconclusive checks carry the minimum detectable effect at the seeds used and the seeds that δ
would need.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from archlab.claims.metrics import (  # noqa: F401  (re-exported for callers)
    ArmData,
    finite,
    lr_sensitivity_by_seed,
    metric_value,
    run_lr,
)
from archlab.runs import inference, stats
from archlab.runs.inference import FAIL, PASS, UNKNOWN, Decision
from archlab.runs.values import fmt

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"
RESULT_KEYS = (
    "check",
    "arm",
    "baseline",
    "metric",
    "status",
    "evidence",
    "numbers",
    "required",
    "headline",
    "fact",
)


@dataclass
class CheckResult:
    check: str
    arm: str
    baseline: str
    metric: str
    status: str
    evidence: str
    numbers: dict[str, Any] = field(default_factory=dict)
    required: bool = True
    headline: bool = False
    fact: bool = False  # holds by construction: reported, not evidence

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in RESULT_KEYS}


@dataclass
class Ctx:
    """What a check function sees."""

    spec: dict[str, Any]
    sample: stats.Sample
    arm: dict[Any, float]
    base: dict[Any, float]
    margin: float | None
    alpha: float
    numbers: dict[str, Any]


def resolve_margin(spec: Any, base_values: list[float]) -> float | None:
    """``0.02`` (nats) | ``"1%"`` (of |baseline mean|)."""
    if spec is None:
        return None
    if isinstance(spec, (int, float)):
        return float(spec)
    text = str(spec).strip()
    if text.endswith("std"):
        raise ValueError(f"margin {spec!r}: margins in units of measured noise are not allowed")
    if text.endswith("%"):
        if not base_values:
            return None
        return float(text[:-1]) / 100 * abs(sum(base_values) / len(base_values))
    return float(text)


def _direction(spec: dict, default: str = "lower") -> int:
    if "worse" in spec:  # small_cost's older spelling: which side is worse
        return -1 if spec["worse"] == "higher" else 1
    return -1 if spec.get("direction", default) == "lower" else 1


# --------------------------------------------------------------------------- check functions


def _superior(direction: int | None = None) -> Callable[[Ctx], Decision]:
    def check(c: Ctx) -> Decision:
        d = direction if direction is not None else _direction(c.spec)
        return inference.superior(c.sample, d, c.margin, c.alpha)

    return check


def _faster(c: Ctx) -> Decision:
    n = c.numbers
    if n["baseline_mean"]:
        n["ratio"] = n["arm_mean"] / n["baseline_mean"]
    return inference.superior(c.sample, +1, c.margin, c.alpha)


def _non_inferior(c: Ctx) -> Decision:
    return inference.non_inferior(c.sample, _direction(c.spec), c.margin, c.alpha)


def _equivalent(c: Ctx) -> Decision:
    return inference.equivalent(c.sample, c.margin, c.alpha)


def _below(c: Ctx) -> Decision:
    threshold = float(c.spec["threshold"])
    s = stats.sample(c.arm, {k: threshold for k in c.arm})  # one sample against a constant
    c.numbers.update(threshold=threshold, arm_ci=list(stats.ci(s, 1 - c.alpha)))
    return inference.superior(s, -1, None, c.alpha)


def _ratio_equals(c: Ctx) -> Decision:
    n = c.numbers
    expected, tol = float(c.spec["expected"]), float(c.spec.get("tol", 1e-6))
    ratio = n["arm_mean"] / n["baseline_mean"] if n["baseline_mean"] else None
    n.update(ratio=ratio, expected=expected, tol=tol)
    ok = ratio is not None and abs(ratio - expected) <= tol * abs(expected)
    why = f"ratio {fmt(ratio)} vs expected {expected:g} (tol {tol:g})"
    return Decision(PASS if ok else FAIL, why, 0.0 if not ok else 1.0)


@dataclass(frozen=True)
class Check:
    fn: Callable[[Ctx], Decision]
    metric: str = "val_loss"  # the default metric
    fact: bool = False


CHECKS: dict[str, Check] = {
    "superior": Check(_superior()),
    "lower": Check(_superior(-1)),
    "higher": Check(_superior(+1)),
    "faster": Check(_faster, "tokens_per_sec"),
    "lr_sensitivity_lower": Check(_superior(-1), "lr_sensitivity"),
    "non_inferior": Check(_non_inferior),
    "small_cost": Check(_non_inferior),
    "equivalent": Check(_equivalent),
    "below": Check(_below),
    "ratio_equals": Check(_ratio_equals, fact=True),
}
CHECK_KINDS = frozenset(CHECKS)


# --------------------------------------------------------------------------- evaluation


def _at_fixed_lr(spec: dict, arms: dict[str, ArmData], names: tuple[str, str]) -> dict:
    """``lr: max|min|<value>`` in a check: compare both arms at that LR of the grid."""
    if "lr" not in spec:
        return arms
    lrs = sorted({run_lr(r) for n in names for r in arms[n].runs} - {None})
    at = {"max": lrs[-1] if lrs else None, "min": lrs[0] if lrs else None}.get(
        str(spec["lr"]), spec["lr"]
    )
    lr = float(at) if at is not None else None
    out = dict(arms)
    for n in names:  # an LR fixed before the data: no pick, so no winner's curse: every seed
        out[n] = ArmData(n, arms[n].runs, lr, None)
    return out


def _values(kind: str, arm: ArmData, base: ArmData, metric: str, base_metric: str):
    if kind == "lr_sensitivity_lower" or metric == "lr_sensitivity":  # whole grid, every seed
        return lr_sensitivity_by_seed(arm.runs), lr_sensitivity_by_seed(base.runs), 0, 0
    (a, div_a), (b, div_b) = arm.values(metric), base.values(base_metric)
    return a, b, div_a, div_b


def _numbers(s: stats.Sample, a: dict, b: dict, alpha: float) -> dict[str, Any]:
    lo, hi = stats.ci(s, 1 - alpha)
    am, bm = list(a.values()), list(b.values())
    return {
        "test": s.kind,
        "n_pairs": 0 if s.diffs is None else len(s.diffs),
        "n_arm": len(am),
        "n_baseline": len(bm),
        "arm_mean": sum(am) / len(am) if am else None,
        "baseline_mean": sum(bm) / len(bm) if bm else None,
        "diff": s.mean,
        "ci_low": lo,
        "ci_high": hi,
        "p_value": stats.p_value(s) if s.testable else None,
        "seed_sd_baseline": inference.noise_summary(bm),
    }


def _evidence(n: dict[str, Any], alpha: float, why: str) -> str:
    ci = f" [{fmt(n['ci_low'])}, {fmt(n['ci_high'])}]" if n["ci_low"] is not None else ""
    p = "n/a" if n["p_value"] is None else f"{n['p_value']:.3g}"
    text = (
        f"Δ = {fmt(n['diff'])}{ci} ({1 - alpha:.0%} CI, {n['test']}, "
        f"n={n['n_arm']}/{n['n_baseline']}, p={p}): {why}"
    )
    if n.get("ratio") is not None and "expected" not in n:
        text += f"; ratio {n['ratio']:.3f}×"
    if n.get("diverged_arm") or n.get("diverged_baseline"):
        text += (
            f"; diverged runs counted at their initial loss: {n['diverged_arm']} (arm), "
            f"{n['diverged_baseline']} (baseline)"
        )
    return text


def _power_numbers(res: CheckResult, s: stats.Sample, margin, alpha: float) -> None:
    """Next to an inconclusive check: the detectable effect now, and the seeds δ needs."""
    two_sided = res.check == "equivalent"
    res.numbers["mde"] = inference.detectable(s, alpha, two_sided=two_sided)
    res.numbers["seeds_needed"] = inference.seeds_needed(s, margin, alpha)
    if res.numbers["mde"] is not None:
        res.evidence += f"; detectable now: {fmt(res.numbers['mde'])}"
    if res.numbers["seeds_needed"] is not None:
        res.evidence += f"; δ needs ≈{res.numbers['seeds_needed']} seeds"


def evaluate_check(  # noqa: C901 (split into a registry of check kinds by issue #11)
    spec: dict[str, Any], arms: dict[str, ArmData], default_baseline: str, alpha: float = 0.05
) -> CheckResult:
    kind = spec["check"]
    check = CHECKS[kind]
    arm, base = spec["arm"], spec.get("baseline", default_baseline)
    metric = check.metric if kind == "lr_sensitivity_lower" else spec.get("metric", check.metric)
    base_metric = spec.get("baseline_metric", metric)
    res = CheckResult(kind, arm, base, metric, UNKNOWN, "", required=spec.get("required", True))
    res.headline, res.fact = bool(spec.get("headline", False)), check.fact
    if base_metric != metric:
        res.metric = f"{metric} vs {base_metric}"
    if not (arms.get(arm) and arms[arm].runs and arms.get(base) and arms[base].runs):
        res.evidence = "no runs for this arm or its baseline"
        return res
    arms = _at_fixed_lr(spec, arms, (arm, base))
    a, b, div_a, div_b = _values(kind, arms[arm], arms[base], metric, base_metric)
    if not a or not b:
        res.evidence = f"metric {metric} not recorded (arm n={len(a)}, baseline n={len(b)})"
        return res
    s = stats.sample(a, b)
    n = res.numbers = _numbers(s, a, b, alpha)
    n.update(diverged_arm=div_a, diverged_baseline=div_b, lr_arm=arms[arm].lr)
    n.update(lr_baseline=arms[base].lr, margin_spec=spec.get("margin", spec.get("max_cost")))
    n["margin"] = resolve_margin(n["margin_spec"], list(b.values()))
    decision = check.fn(Ctx(spec, s, a, b, n["margin"], alpha, n))
    res.status, res.fact = decision.status, check.fact or s.kind == "exact"
    n.update(decision.numbers, p_fail=decision.p_fail, p_hold=decision.p_hold)
    res.evidence = decision.why if kind == "ratio_equals" else _evidence(n, alpha, decision.why)
    if res.status == UNKNOWN and not res.fact:
        _power_numbers(res, s, n["margin"], alpha)
    return res


def check_sample(
    spec: dict[str, Any], arms: dict[str, ArmData], default_baseline: str
) -> tuple[stats.Sample | None, float | None]:
    """The check's Δ sample (arm − baseline) and its resolved margin δ, from ``arms`` as they
    are (e.g. restricted to pilot seeds); (None, None) without runs or values."""
    kind = spec["check"]
    arm, base = spec["arm"], spec.get("baseline", default_baseline)
    if not (arms.get(arm) and arms[arm].runs and arms.get(base) and arms[base].runs):
        return None, None
    metric = CHECKS[kind].metric if kind == "lr_sensitivity_lower" else spec.get("metric")
    metric = metric or CHECKS[kind].metric
    arms = _at_fixed_lr(spec, arms, (arm, base))
    a, b, _, _ = _values(kind, arms[arm], arms[base], metric, spec.get("baseline_metric", metric))
    if not a or not b:
        return None, None
    margin = resolve_margin(spec.get("margin", spec.get("max_cost")), list(b.values()))
    return stats.sample(a, b), margin


def adjust_failures(results: list[CheckResult], alpha: float) -> None:
    """Holm across the required evidence checks: a failure stands only if its adjusted p does."""
    evidence = [r for r in results if r.required and not r.fact]
    adjusted = inference.holm([r.numbers.get("p_fail") for r in evidence])
    for r, p in zip(evidence, adjusted):
        r.numbers["p_fail_holm"] = p
        if r.status == FAIL and (p is None or p >= alpha):
            r.status = UNKNOWN
            r.evidence += f"; fails alone but not after Holm (adjusted p={fmt(p)})"


def verdict(results: list[CheckResult]) -> str:
    evidence = [r for r in results if r.required and not r.fact]
    if evidence and all(r.status == PASS for r in evidence):
        return REPRODUCED
    if any(r.status == FAIL for r in evidence):
        return NOT_REPRODUCED
    return INCONCLUSIVE


def evaluate(
    rule: list[dict[str, Any]], arms: dict[str, ArmData], baseline: str, alpha: float = 0.05
) -> tuple[list[CheckResult], str]:
    results = [evaluate_check(spec, arms, baseline, alpha) for spec in rule]
    adjust_failures(results, alpha)
    if results and not any(r.headline for r in results):
        results[0].headline = True
    return results, verdict(results)
