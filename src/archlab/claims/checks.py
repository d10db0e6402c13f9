"""Metrics from run records, the generic checks of a claim's rule, and the verdict.

Metric specs:

* a summary.json key, dotted for nesting: ``val_loss`` (falls back to the last ``val/loss``
  line), ``tokens_per_sec``, ``kv_cache_bytes_per_token``, ``val_loss_at.2x``;
* ``<agg>:<metrics.jsonl key>``: ``last``, ``first``, ``max``, ``min``, ``mean``, ``absmax``,
  ``abs_last``, ``last<k>`` (mean of the last k values), e.g. ``max:attn/max_logit``.

Each check returns pass / fail / unknown with an evidence line and its numbers:

* ``lower`` / ``higher`` (arm vs baseline, seed-paired when >= 2 seeds are shared, else Welch):
  pass when the difference is significant (p < alpha) in the claimed direction; fail when it is
  significant the other way, or when its CI lies inside ±margin (demonstrably no effect);
  otherwise unknown. ``faster`` is ``higher`` on ``tokens_per_sec`` with the speed ratio shown.
* ``equivalent``: pass when the CI of the difference lies inside ±margin; fail when the
  difference is significant and |mean| > margin; otherwise unknown.
* ``small_cost``: the arm may be worse than the baseline by less than ``max_cost``: pass when
  the CI's worse end is below max_cost, fail when even its better end is above it.
* ``lr_sensitivity_lower``: Wortsman et al.'s LR sensitivity computed per seed over the LR
  grid (diverged runs count as that seed's loss at init), then compared like ``lower``.
* ``ratio_equals``: mean(arm)/mean(baseline) equals ``expected`` within ``tol`` (relative).
* ``below``: the arm's metric is below ``threshold`` (pass when the CI's upper end is).

Margins: a number, ``<x>%`` (of |baseline mean|) or ``<x>std`` (× the baseline seed std).
Verdict: **reproduced** when every required check passes, **not reproduced** when any fails,
**inconclusive** otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from archlab.runs import stats
from archlab.runs.load import RunRecord
from archlab.runs.values import finite as _finite
from archlab.runs.values import fmt as _fmt

PASS, FAIL, UNKNOWN = "pass", "fail", "unknown"
REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"
LOSS_METRICS = ("val_loss",)


# --------------------------------------------------------------------------- metrics


def _agg(values: list[float], agg: str) -> float | None:
    if not values:
        return None
    if agg == "last":
        return values[-1]
    if agg == "first":
        return values[0]
    if agg == "max":
        return max(values)
    if agg == "min":
        return min(values)
    if agg == "mean":
        return sum(values) / len(values)
    if agg == "absmax":
        return max(abs(v) for v in values)
    if agg == "abs_last":
        return abs(values[-1])
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
        return _agg([float(m[key]) for m in rows if _finite(m.get(key))], agg)
    if spec == "val_loss":
        return record.final_val_loss()
    if (
        spec == "val_minus_train"
    ):  # generalisation gap: final val loss - mean of last 3 train losses
        val = record.final_val_loss()
        train = metric_value(record, "last3:train/loss")
        return None if val is None or train is None else val - train
    node: Any = record.summary
    for part in spec.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return float(node) if _finite(node) else None


def run_lr(record: RunRecord) -> float | None:
    lr = (record.config.get("optim") or {}).get("lr")
    return float(lr) if _finite(lr) else None


def _by_seed(pairs: list[tuple[Any, float]]) -> dict[Any, float]:
    acc: dict[Any, list[float]] = {}
    for seed, v in pairs:
        acc.setdefault(seed, []).append(v)
    return {s: sum(v) / len(v) for s, v in acc.items()}


def best_lr(runs: list[RunRecord]) -> float | None:
    """The LR with the lowest seed-mean final val loss, diverged runs counting as loss at init."""
    by_lr: dict[float, list[float]] = {}
    for r in runs:
        if r.status == "failed" or run_lr(r) is None:
            continue
        v = r.loss_at_init() if r.status == "diverged" else r.final_val_loss()
        if v is not None:
            by_lr.setdefault(run_lr(r), []).append(v)
    if not by_lr:
        return None
    return min(by_lr, key=lambda lr: sum(by_lr[lr]) / len(by_lr[lr]))


@dataclass
class ArmData:
    name: str
    runs: list[RunRecord]
    lr: float | None = None  # the LR its comparisons use (best LR when the claim sweeps LR)

    def at_lr(self) -> list[RunRecord]:
        return [r for r in self.runs if self.lr is None or run_lr(r) == self.lr]

    def values(self, spec: str) -> tuple[dict[Any, float], int]:
        """seed -> metric value at the arm's LR (usable runs), and the number of diverged runs."""
        runs = [r for r in self.at_lr() if r.status != "failed"]
        diverged = sum(r.status == "diverged" for r in runs)
        pairs = [(r.seed, metric_value(r, spec)) for r in runs if r.status != "diverged"]
        return _by_seed([(s, v) for s, v in pairs if v is not None]), diverged


def lr_sensitivity_by_seed(runs: list[RunRecord]) -> dict[Any, float]:
    """seed -> LR sensitivity over that seed's LR grid (Wortsman et al. 2023)."""
    by_seed: dict[Any, list[RunRecord]] = {}
    for r in runs:
        if r.status != "failed" and run_lr(r) is not None:
            by_seed.setdefault(r.seed, []).append(r)
    out = {}
    for seed, rs in by_seed.items():
        inits = [x for x in (r.loss_at_init() for r in rs) if x is not None]
        if len({run_lr(r) for r in rs}) < 2 or not inits:
            continue
        init = sum(inits) / len(inits)
        finals: dict[float, list] = {}
        for r in rs:
            finals.setdefault(run_lr(r), []).append(
                None if r.status == "diverged" else r.final_val_loss()
            )
        value = stats.lr_sensitivity(finals, init)
        if value is not None:
            out[seed] = value
    return out


# --------------------------------------------------------------------------- checks


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

    def as_dict(self) -> dict[str, Any]:
        return {
            k: getattr(self, k)
            for k in (
                "check",
                "arm",
                "baseline",
                "metric",
                "status",
                "evidence",
                "numbers",
                "required",
                "headline",
            )
        }


def resolve_margin(spec: Any, base_values: list[float]) -> float | None:
    """``0.02`` | ``"1%"`` (of |baseline mean|) | ``"2std"`` (× baseline seed std)."""
    if spec is None:
        return None
    if isinstance(spec, (int, float)):
        return float(spec)
    text = str(spec).strip()
    if text.endswith("%"):
        if not base_values:
            return None
        return float(text[:-1]) / 100 * abs(sum(base_values) / len(base_values))
    if text.endswith("std"):
        ci = stats.mean_ci(base_values)
        return None if ci.std is None else float(text[:-3] or 1) * ci.std
    return float(text)


def _diff_numbers(a: dict, b: dict, alpha: float) -> dict[str, Any]:
    d = stats.compare_to_baseline(a, b, alpha)
    shared = [s for s in a if s in b]
    diffs = {a[s] - b[s] for s in shared}
    if d.ci_low is None and len(shared) >= 2 and len(diffs) == 1:
        # a deterministic metric (params, FLOPs, KV bytes): every seed differs by the same amount
        exact = diffs.pop()
        d = stats.Diff("exact", len(shared), exact, exact, exact, 0.0 if exact else 1.0)
    am = [v for v in a.values()]
    bm = [v for v in b.values()]
    return {
        "test": d.test,
        "n_pairs": d.n_pairs,
        "n_arm": len(am),
        "n_baseline": len(bm),
        "arm_mean": sum(am) / len(am) if am else None,
        "baseline_mean": sum(bm) / len(bm) if bm else None,
        "diff": d.mean,
        "ci_low": d.ci_low,
        "ci_high": d.ci_high,
        "p_value": d.p_value,
    }


def _diff_text(n: dict[str, Any], level: str) -> str:
    ci = f" [{_fmt(n['ci_low'])}, {_fmt(n['ci_high'])}]" if n["ci_low"] is not None else " (no CI)"
    p = "n/a" if n["p_value"] is None else f"{n['p_value']:.3g}"
    return (
        f"Δ = {_fmt(n['diff'])}{ci} ({level} CI, {n['test']}, n={n['n_arm']}/"
        f"{n['n_baseline']}, p={p})"
    )


def _directional(n: dict, direction: int, margin: float | None, alpha: float) -> tuple[str, str]:
    if n["diff"] is None:
        return UNKNOWN, "no data"
    p = n["p_value"]
    if p is not None and p < alpha:
        if n["diff"] * direction > 0:
            return PASS, "significant in the claimed direction"
        return FAIL, "significant in the opposite direction"
    if (
        margin is not None
        and n["ci_low"] is not None
        and -margin < n["ci_low"]
        and n["ci_high"] < margin
    ):
        return FAIL, f"CI inside ±{_fmt(margin)}: demonstrably no effect"
    return UNKNOWN, "not significant, CI too wide to exclude an effect"


def evaluate_check(  # noqa: C901 (split into a registry of check kinds by issue #11)
    spec: dict[str, Any], arms: dict[str, ArmData], default_baseline: str, alpha: float = 0.05
) -> CheckResult:
    kind = spec["check"]
    arm, base = spec["arm"], spec.get("baseline", default_baseline)
    metric = spec.get("metric", "tokens_per_sec" if kind == "faster" else "val_loss")
    if kind == "lr_sensitivity_lower":
        metric = "lr_sensitivity"
    level = f"{1 - alpha:.0%}"
    res = CheckResult(
        kind,
        arm,
        base,
        metric,
        UNKNOWN,
        "",
        required=spec.get("required", True),
        headline=bool(spec.get("headline", False)),
    )
    if arm not in arms or base not in arms or not arms[arm].runs or not arms[base].runs:
        res.evidence = "no runs for this arm or its baseline"
        return res
    if "lr" in spec:  # compare both arms at one LR of the grid ("max", "min" or a value)
        lrs = sorted({run_lr(r) for r in arms[arm].runs + arms[base].runs} - {None})
        at = {"max": lrs[-1] if lrs else None, "min": lrs[0] if lrs else None}.get(
            str(spec["lr"]), spec["lr"]
        )
        arms = dict(arms)
        arms[arm] = ArmData(arm, arms[arm].runs, float(at) if at is not None else None)
        arms[base] = ArmData(base, arms[base].runs, float(at) if at is not None else None)
    base_metric = spec.get("baseline_metric", metric)
    if base_metric != metric:
        res.metric = f"{metric} vs {base_metric}"
    if kind == "lr_sensitivity_lower":
        a, b = lr_sensitivity_by_seed(arms[arm].runs), lr_sensitivity_by_seed(arms[base].runs)
        div_a = div_b = 0
    else:
        (a, div_a), (b, div_b) = arms[arm].values(metric), arms[base].values(base_metric)
    if not a or not b:
        res.evidence = f"metric {metric} not recorded (arm n={len(a)}, baseline n={len(b)})"
        return res
    n = _diff_numbers(a, b, alpha)
    n.update(diverged_arm=div_a, diverged_baseline=div_b)
    if arms[arm].lr is not None or arms[base].lr is not None:
        n.update(lr_arm=arms[arm].lr, lr_baseline=arms[base].lr)
    margin_spec = spec.get("margin", spec.get("max_cost"))
    margin = resolve_margin(margin_spec, list(b.values()))
    n["margin"] = margin
    n["margin_spec"] = margin_spec
    text = _diff_text(n, level)
    extra = ""
    if div_a or div_b:
        extra = f"; diverged runs excluded: {div_a} (arm), {div_b} (baseline)"

    if kind in ("lower", "higher", "faster", "lr_sensitivity_lower"):
        direction = -1 if kind in ("lower", "lr_sensitivity_lower") else 1
        res.status, why = _directional(n, direction, margin, alpha)
        if kind == "faster" and n["baseline_mean"]:
            n["ratio"] = n["arm_mean"] / n["baseline_mean"]
            text += f"; speed ratio {n['ratio']:.3f}×"
        res.evidence = f"{text}: {why}{extra}"
    elif kind == "equivalent":
        if margin is None:
            res.evidence = f"{text}: no margin (needs >= 2 baseline seeds)"
        elif n["ci_low"] is not None and -margin < n["ci_low"] and n["ci_high"] < margin:
            res.status, res.evidence = PASS, f"{text}: CI inside ±{_fmt(margin)}{extra}"
        elif n["p_value"] is not None and n["p_value"] < alpha and abs(n["diff"]) > margin:
            res.status = FAIL
            res.evidence = f"{text}: significant and |Δ| > {_fmt(margin)}{extra}"
        else:
            res.evidence = f"{text}: CI not inside ±{_fmt(margin)}{extra}"
    elif kind == "small_cost":
        worse = 1 if spec.get("worse", "higher") == "higher" else -1
        lo, hi = n["ci_low"], n["ci_high"]
        if lo is None or margin is None:
            res.evidence = f"{text}: no CI"
        else:
            cost_hi, cost_lo = (hi, lo) if worse > 0 else (-lo, -hi)
            n["cost_ci"] = [cost_lo, cost_hi]
            if cost_hi < margin:
                res.status, why = PASS, f"cost CI upper {_fmt(cost_hi)} < max cost {_fmt(margin)}"
            elif cost_lo > margin:
                res.status, why = FAIL, f"cost CI lower {_fmt(cost_lo)} > max cost {_fmt(margin)}"
            else:
                why = f"cost CI [{_fmt(cost_lo)}, {_fmt(cost_hi)}] straddles {_fmt(margin)}"
            res.evidence = f"{text}: {why}{extra}"
    elif kind == "ratio_equals":
        expected, tol = float(spec["expected"]), float(spec.get("tol", 1e-6))
        ratio = n["arm_mean"] / n["baseline_mean"] if n["baseline_mean"] else None
        n.update(ratio=ratio, expected=expected, tol=tol)
        ok = ratio is not None and abs(ratio - expected) <= tol * abs(expected)
        res.status = PASS if ok else FAIL
        res.evidence = (
            f"ratio {_fmt(n['arm_mean'])}/{_fmt(n['baseline_mean'])} = {_fmt(ratio)} "
            f"vs expected {expected:g} (tol {tol:g})"
        )
    elif kind == "below":
        threshold = float(spec["threshold"])
        ci = stats.mean_ci(list(a.values()), alpha)
        n.update(threshold=threshold, arm_ci=[ci.ci_low, ci.ci_high])
        if ci.ci_high is not None and ci.ci_high < threshold:
            res.status = PASS
        elif ci.ci_low is not None and ci.ci_low > threshold:
            res.status = FAIL
        elif ci.ci_high is None and ci.mean is not None:
            res.status = PASS if ci.mean < threshold else FAIL
        res.evidence = (
            f"{arm}: {metric} = {_fmt(ci.mean)} [{_fmt(ci.ci_low)}, "
            f"{_fmt(ci.ci_high)}] vs threshold {threshold:g}"
        )
    res.numbers = n
    return res


def verdict(results: list[CheckResult]) -> str:
    required = [r for r in results if r.required]
    if required and all(r.status == PASS for r in required):
        return REPRODUCED
    if any(r.status == FAIL for r in required):
        return NOT_REPRODUCED
    return INCONCLUSIVE


def evaluate(
    rule: list[dict[str, Any]], arms: dict[str, ArmData], baseline: str, alpha: float = 0.05
) -> tuple[list[CheckResult], str]:
    results = [evaluate_check(spec, arms, baseline, alpha) for spec in rule]
    if results and not any(r.headline for r in results):
        results[0].headline = True
    return results, verdict(results)


def assign_lrs(arms: dict[str, ArmData], lr_grid: list[float] | None, pick: Callable = best_lr):
    """With an LR grid, each arm is compared at its own best LR."""
    for data in arms.values():
        data.lr = pick(data.runs) if lr_grid else None
