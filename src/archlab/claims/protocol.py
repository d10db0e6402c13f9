"""A claim's comparison protocol: the out-of-sample LR pick and the pre-registration record.

* **Tuned LR.** With an LR grid, each arm's LR is picked on its scout seeds
  (``archlab.runs.tuning.pick_lr``: quadratic fit in log LR, snapped to the grid; diverged runs
  at their loss at init) and the arms are compared on the confirm seeds at those LRs. Under
  ``protocol: tuned`` the pick is written to ``<sweep>/lr_pick.json`` before any confirm run
  starts, and reused when the reproduce resumes.
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

from archlab.claims.metrics import ArmData, run_lr
from archlab.claims.registry import Claim
from archlab.runs.compare import scored_loss
from archlab.runs.tuning import pick_lr

PICK = "lr_pick.json"
PREREG = "preregistration.json"


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


def tuned_arms(claim: Claim, recs: dict[str, list], smoke: bool, sweep: Path) -> tuple:
    """ArmData at each arm's tuned LR on the confirm seeds, and the picks (None without grid)."""
    _, _, grid = claim.settings(smoke)
    if not grid:
        return {a: ArmData(a, rs) for a, rs in recs.items()}, None
    picks = recorded_picks(sweep) if claim.protocol == "tuned" else None
    picks = picks or picks_from_runs(claim, recs, smoke)
    _, confirm = claim.seed_split(smoke)
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
