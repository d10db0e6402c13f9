"""The campaign's fixed settings (``experiments/campaign.yaml``) and the protocol minimums.

A claim names its kind of protocol (``campaign: {minimums: stability}``); a claim whose seeds,
LR grid or tokens per run fall below that kind's minimums is **exploratory**, and its report
says so (it is never silently shrunk to fit a budget). A claim may also declare
``campaign: {exploratory: true}`` when ``--plan`` shows its minimums do not fit its budget.
Everything here is a pure function of committed files (claims, campaign.yaml, records).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from archlab.claims.registry import Claim, ClaimError

CAMPAIGN_FILE = "campaign.yaml"  # in experiments/, beside claims/
DEFAULT_LAYOUT = {"jobs": 1, "threads": 2}


def campaign_path(experiments: Path) -> Path:
    return Path(experiments) / CAMPAIGN_FILE


def claim_campaign(claim: Claim) -> dict[str, Any]:
    """The campaign settings beside the claim's file (``<claims dir>/../campaign.yaml``)."""
    if claim.path is None:
        return load_campaign(None)
    return load_campaign(campaign_path(Path(claim.path).resolve().parent.parent))


def load_campaign(path: Path | None) -> dict[str, Any]:
    """``experiments/campaign.yaml`` (``None`` or missing: the defaults)."""
    import yaml

    if path is None:
        return {"layout": dict(DEFAULT_LAYOUT), "minimums": {}, "rung": []}

    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError:
        return {"layout": dict(DEFAULT_LAYOUT), "minimums": {}, "rung": []}
    except (OSError, yaml.YAMLError) as err:
        raise ClaimError(f"{path}: unreadable: {str(err).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ClaimError(f"{path}: not a mapping")
    data.setdefault("layout", dict(DEFAULT_LAYOUT))
    data.setdefault("minimums", {})
    data.setdefault("rung", [])
    return data


def claim_seeds(claim: Claim) -> int:
    """Seeds the comparison rests on: confirm seeds (tuned), else the fewest of any arm."""
    if claim.protocol == "tuned":
        return len(claim.confirm_seeds)
    return min(claim.arm_seeds.get(a, claim.seeds) for a in claim.arms)


def exploratory_reasons(
    claim: Claim, tokens_per_run: int | None, campaign: dict[str, Any] | None = None
) -> list[str]:
    """Why the claim is exploratory (empty: it meets its protocol minimums)."""
    spec = claim.campaign or {}
    if not spec:
        return []
    out = (
        ["declared exploratory (its minimums do not fit its budget)"]
        if spec.get("exploratory")
        else []
    )
    kind = spec.get("minimums")
    mins = ((campaign or claim_campaign(claim)).get("minimums") or {}).get(kind) if kind else None
    if not mins:
        return out
    if claim_seeds(claim) < mins.get("seeds", 0):
        out.append(f"{claim_seeds(claim)} seeds < {mins['seeds']}")
    points = len(claim.lr_grid or [])
    if points < mins.get("lr_points", 0):
        out.append(f"{points} LR points < {mins['lr_points']}")
    if tokens_per_run is not None and tokens_per_run < mins.get("tokens_per_run", 0):
        out.append(f"{tokens_per_run:,} tokens per run < {mins['tokens_per_run']:,}")
    return out


def exploratory_lines(claim: Claim, tokens_per_run: int | None) -> list[str]:
    reasons = exploratory_reasons(claim, tokens_per_run)
    if not reasons:
        return []
    kind = (claim.campaign or {}).get("minimums", "protocol")
    return [
        (
            f"**Exploratory**: below the {kind} protocol's minimums ({'; '.join(reasons)}); "
            "read the verdict as a pilot, not as evidence."
        ),
        "",
    ]
