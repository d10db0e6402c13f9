"""Which compute budget the compared arms share, and when equal steps is not equal compute.

A run records ``summary.budget = {"kind": steps|tokens|flops|seconds, "target": x,
"achieved": y}`` (``archlab.train.budget``); older runs without it were step-budgeted.
"""

from __future__ import annotations

import math
from typing import Any

FLOPS_TOLERANCE = 0.05  # equal steps but FLOPs/token differing by more than this: warn


def run_budget(summary: dict[str, Any]) -> dict[str, Any]:
    budget = summary.get("budget")
    if isinstance(budget, dict) and budget.get("kind"):
        return budget
    return {"kind": "steps", "target": summary.get("steps"), "achieved": summary.get("steps")}


def _describe(kinds: set[str], targets: set) -> str:
    if len(kinds) != 1:
        return "mixed budgets: " + ", ".join(sorted(kinds))
    kind = next(iter(kinds))
    if len(targets) == 1:
        return f"equal {kind}: {next(iter(targets)):g}"
    if not targets:
        return f"equal {kind} (amount not recorded)"
    return f"{kind} budgets differ ({len(targets)} values: a ladder or a mistake)"


def budget_summary(records, rows: list[dict], warnings: list[str]) -> dict[str, Any]:
    """The shared budget (stated in the report); warns on equal steps at unequal FLOPs/token."""
    budgets = [run_budget(r.summary) for r in records if r.status != "failed"]
    kinds = {b["kind"] for b in budgets}
    targets = {float(b["target"]) for b in budgets if isinstance(b.get("target"), (int, float))}
    fpt = [r["flops_per_token"] for r in rows if r.get("flops_per_token")]
    spread = (max(fpt) - min(fpt)) / min(fpt) if len(fpt) >= 2 else 0.0
    if kinds == {"steps"} and spread > FLOPS_TOLERANCE:
        warnings.append(
            f"arms compared at equal steps differ in FLOPs per token by {spread:.0%} "
            "(> 5%): compare at equal compute with train.budget=flops:<n>"
        )
    return {
        "kinds": sorted(kinds),
        "shared": _describe(kinds, targets),
        "flops_per_token_spread": spread if math.isfinite(spread) else None,
    }
