"""A claim's comparison protocol: the out-of-sample LR pick and the pre-registration record.

* **Tuned LR.** With an LR grid, each arm's LR is picked on its scout seeds
  (``archlab.runs.tuning.pick_lr``: quadratic fit in log LR, snapped to the grid; diverged runs
  at their loss at init) and the arms are compared on the confirm seeds at those LRs. Under
  ``protocol: tuned`` the pick is written to ``<sweep>/lr_pick.json`` before any confirm run
  starts, and reused when the reproduce resumes.
* **Pilot-sized confirm.** With ``pilot: {seeds, ucb}``, every arm runs the pilot seeds at its
  pick first; for each required check the paired SD σ of the pilot's Δ is raised to its
  one-sided ``ucb`` chi-square upper confidence bound and the check's confirm seeds come from
  the paired formula for its own δ and test kind (``archlab.runs.inference.paired_seeds``).
  The largest n over the checks (at least ``MIN_CONFIRM``, at most the ``confirm_seeds`` listed)
  is written to ``<sweep>/confirm_seeds.json`` before any confirm run starts, and reused.
  Pilot seeds never enter a test.
* **Pre-registration.** When a claim's first run starts, the claim's arms, rule, margins,
  seeds and budget are hashed into ``<sweep>/preregistration.json``. The report shows the hash
  and flags a later edit of the rule or margins as "changed after data".
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from archlab.claims.checks import check_sample
from archlab.claims.metrics import ArmData, run_lr
from archlab.claims.registry import Claim
from archlab.runs.compare import scored_loss
from archlab.runs.inference import POWER, SIZED_TESTS, paired_seeds, sd_upper_bound
from archlab.runs.tuning import pick_lr

PICK = "lr_pick.json"
PREREG = "preregistration.json"
SEED_PLAN = "confirm_seeds.json"
MIN_CONFIRM = 3  # the quality protocol's minimum seeds


def picks_from_runs(claim: Claim, recs: dict[str, list], smoke: bool) -> dict[str, Any]:
    """arm -> {lr, method, on_edge, curve, warning} from the scout runs."""
    scout, _ = claim.seed_split(smoke)
    out = {}
    for arm, runs in recs.items():
        live = [r for r in runs if r.seed in scout and r.status != "failed"]
        inits = [x for x in (r.loss_at_init() for r in live) if x is not None]
        ceiling = sum(inits) / len(inits) if inits else None
        pick = pick_lr([(run_lr(r), scored_loss(r)) for r in live], ceiling)
        out[arm] = {
            "lr": pick.lr,
            "method": pick.method,
            "on_edge": pick.on_edge,
            "curve": pick.curve,
            "warning": pick.warning,
        }
    return out


def record_picks(sweep: Path, picks: dict[str, Any]) -> None:
    sweep.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    (sweep / PICK).write_text(json.dumps({"recorded_at": stamp, "picks": picks}, indent=2))


def recorded_picks(sweep: Path) -> dict[str, Any] | None:
    try:
        return json.loads((sweep / PICK).read_text())["picks"]
    except (OSError, ValueError, KeyError):
        return None


def _sized_check(spec: dict, arms: dict[str, ArmData], claim: Claim, alpha: float) -> dict:
    """One required check's seed count from the pilot (``n`` None when it cannot be sized)."""
    row = {"check": spec["check"], "arm": spec["arm"], "metric": spec.get("metric", "val_loss")}
    row["baseline"] = spec.get("baseline", claim.baseline)
    test = SIZED_TESTS.get(spec["check"])
    s, margin = check_sample(spec, arms, claim.baseline)
    if test is None or s is None or s.kind != "paired" or not margin:
        why = "not a sized test" if test is None else "no paired pilot values or no δ"
        return {**row, "n": None, "why": why}
    sd = float(np.std(s.diffs, ddof=1))
    sigma = sd_upper_bound(sd, len(s.diffs), claim.pilot_ucb)
    n = paired_seeds(sigma, margin, test, alpha, POWER)
    return {**row, "test": test, "pairs": len(s.diffs), "sd": sd, "sd_ucb": sigma,
            "delta": margin, "n": n}  # fmt: skip


def seed_plan(
    claim: Claim, recs: dict[str, list], picks: dict, smoke: bool, alpha: float = 0.05
) -> dict[str, Any]:
    """The confirm seeds from the pilot runs at the picks: the largest n over the required
    checks, at least MIN_CONFIRM, capped by the listed confirm seeds (``capped`` says so)."""
    pilot = claim.pilot_split(smoke)
    _, confirm = claim.seed_split(smoke)
    arms = {
        a: ArmData(a, rs, (picks.get(a) or {}).get("lr"), frozenset(pilot))
        for a, rs in recs.items()
    }
    rows = [_sized_check(s, arms, claim, alpha) for s in claim.rule if s.get("required", True)]
    wanted = max([MIN_CONFIRM] + [r["n"] for r in rows if r["n"] is not None])
    n = min(wanted, len(confirm))
    return {
        "pilot_seeds": pilot,
        "ucb": claim.pilot_ucb,
        "alpha": alpha,
        "power": POWER,
        "checks": rows,
        "wanted": wanted,
        "cap": len(confirm),
        "capped": wanted > len(confirm),
        "n": n,
        "confirm_seeds": confirm[:n],
    }


def record_seed_plan(sweep: Path, plan: dict[str, Any]) -> None:
    sweep.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    (sweep / SEED_PLAN).write_text(json.dumps({"recorded_at": stamp, **plan}, indent=2))


def recorded_seed_plan(sweep: Path) -> dict[str, Any] | None:
    try:
        plan = json.loads((sweep / SEED_PLAN).read_text())
    except (OSError, ValueError):
        return None
    plan.pop("recorded_at", None)
    return plan


def confirm_seeds(claim: Claim, smoke: bool, sweep: Path) -> list[int]:
    """The confirm seeds a comparison uses: the recorded seed plan's, else every listed one."""
    plan = recorded_seed_plan(sweep) if claim.pilot_seeds else None
    return list(plan["confirm_seeds"]) if plan else claim.seed_split(smoke)[1]


def tuned_arms(claim: Claim, recs: dict[str, list], smoke: bool, sweep: Path) -> tuple:
    """ArmData at each arm's tuned LR on the confirm seeds, and the picks (None without grid)."""
    _, _, grid = claim.settings(smoke)
    if not grid:
        return {a: ArmData(a, rs) for a, rs in recs.items()}, None
    picks = recorded_picks(sweep) if claim.protocol == "tuned" else None
    picks = picks or picks_from_runs(claim, recs, smoke)
    confirm = confirm_seeds(claim, smoke, sweep)
    arms = {
        a: ArmData(a, rs, (picks.get(a) or {}).get("lr"), frozenset(confirm))
        for a, rs in recs.items()
    }
    return arms, picks


# --------------------------------------------------------------------------- pre-registration


def _registered(claim: Claim) -> dict[str, Any]:
    return {
        "arms": claim.arms,
        "base": claim.base,
        "baseline": claim.baseline,
        "rule": claim.rule,
        "seeds": claim.seeds,
        "budget": claim.budget,
        "lr_grid": claim.lr_grid,
        "protocol": claim.protocol,
        "scout_seeds": claim.scout_seeds,
        "confirm_seeds": claim.confirm_seeds,
        **({"scout_overrides": claim.scout_overrides} if claim.scout_overrides else {}),
        **(
            {"pilot": {"seeds": claim.pilot_seeds, "ucb": claim.pilot_ucb}}
            if claim.pilot_seeds
            else {}
        ),
    }


def digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def preregister(claim: Claim, sweep: Path) -> None:
    """Write the record once, when the claim's first run starts (never overwritten)."""
    path = sweep / PREREG
    if path.exists():
        return
    sweep.mkdir(parents=True, exist_ok=True)
    reg = _registered(claim)
    record = {"hash": digest(reg), "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%S"), **reg}
    path.write_text(json.dumps(record, indent=2))


def preregistration_status(claim: Claim, sweep: Path) -> dict[str, Any]:
    """The recorded hash, and which of rule/margins changed after data (empty when none)."""
    try:
        record = json.loads((sweep / PREREG).read_text())
    except (OSError, ValueError):
        return {"hash": None, "changed_after_data": []}
    now = _registered(claim)
    changed = [k for k in ("rule", "arms", "baseline", "seeds") if record.get(k) != now[k]]
    return {
        "hash": record.get("hash"),
        "current_hash": digest(now),
        "recorded_at": record.get("recorded_at"),
        "changed_after_data": changed,
    }
