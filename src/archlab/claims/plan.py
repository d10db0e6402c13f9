"""``archlab reproduce --plan [<id>|all]``: what a claim will cost before any CPU is spent.

Per claim: arms, LR grid, seeds, tokens per run, seconds per run and the total CPU-hours at
the campaign's layout (``jobs`` × ``threads``; CPU-hours = run seconds × threads). Seconds
per run come from, in order:

1. the claim's own records: the median over that arm's recorded runs of their busy seconds
   (CPU-seconds over threads: load from other work stretches the wall clock, not these;
   the wall clock for records without a consistent CPU-second count);
2. this machine's calibration (``archlab reproduce --calibrate``): tokens/s per job of the
   standard rung in the chosen layout, scaled by the arm's training FLOPs per token against
   the rung's, for the training tokens plus a third of the evaluation tokens (a forward pass);
3. else the campaign's records of any claim in the chosen layout that count CPU-seconds: their
   training FLOPs per busy second, as a rung tokens/s (slightly conservative: their seconds
   include evaluation);
4. else the field notes' quiet rate (18k tokens/s with 2 threads at the rung), labelled so.

A claim whose protocol minimums are not met, or whose cost exceeds its ``campaign.cpu_hours``,
is flagged: the first makes its report "exploratory"; the second asks for a decision.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archlab.claims.minimums import exploratory_reasons
from archlab.claims.registry import Claim

FIELD_NOTES_RATE = 18_000.0  # tokens/s, standard rung, 2 quiet threads (field notes)
STARTUP_SEC = 2.0  # per job after the first, in-process (Hydra compose, data memmap, model)


@dataclass
class ArmPlan:
    arm: str
    runs: int
    tokens: int
    seconds: float
    source: str


def _shape(cfg) -> dict[str, float]:
    """Tokens per run, training FLOPs per token, evaluation tokens per run."""
    from archlab.model.flops import train_flops_per_token
    from archlab.train.budget import steps_for

    fpt = train_flops_per_token(cfg.model)
    steps = steps_for(cfg, fpt) if cfg.train.budget else cfg.train.max_steps
    per_step = cfg.train.batch_size * cfg.model.block_size
    evals = steps // cfg.train.val_every + 1
    return {
        "tokens": steps * per_step,
        "fpt": fpt,
        "eval_tokens": evals * cfg.data.val_windows * cfg.model.block_size,
    }


def _rate(calibration: dict | None, layout: dict) -> tuple[float, str] | None:
    """This machine's calibrated tokens/s per job in ``layout`` (None: not calibrated)."""
    key = f"{layout['jobs']}x{layout['threads']}"
    measured = ((calibration or {}).get("layouts") or {}).get(key)
    if not measured:
        return None
    quiet = "quiet" if calibration.get("quiet") else "NOT quiet: do not trust"
    return measured["per_job"], (
        f"calibration {key} {calibration.get('measured_at', '?')[:10]} "
        f"(load {calibration.get('load_average', 0):.1f}, {quiet})"
    )


def _field_notes_rate(layout: dict) -> tuple[float, str]:
    if (layout["jobs"], layout["threads"]) == (1, 2):
        return FIELD_NOTES_RATE, "field notes' quiet rate, uncalibrated (run --calibrate)"
    return FIELD_NOTES_RATE / 2, "half the field notes' rate, uncalibrated (run --calibrate)"


def cpu_busy_seconds(summary: dict) -> float | None:
    """A recorded run's seconds per job without other work's load: its CPU-seconds over its
    threads; None if not recorded or inconsistent (more than wall × threads: early records
    summed the process's CPU time over every run before them)."""
    prov, wall = summary.get("provenance") or {}, summary.get("elapsed_sec")
    cpu, threads = prov.get("cpu_seconds"), prov.get("threads")
    if cpu and threads and (not wall or cpu <= 1.05 * wall * threads):
        return float(cpu) / threads
    return None


def busy_seconds(summary: dict) -> float | None:
    """:func:`cpu_busy_seconds`, else the wall clock (stretched by any load at the time)."""
    wall = summary.get("elapsed_sec")
    return cpu_busy_seconds(summary) or (float(wall) if wall else None)


def _recorded_seconds(records: list[dict], arm_of) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for s in records:
        arm = arm_of(s.get("overrides") or [])
        if arm and s.get("status") == "completed" and busy_seconds(s):
            out.setdefault(arm, []).append(busy_seconds(s))
    return out


def records_rate(records_root: Path, rung_fpt: float, layout: dict) -> tuple[float, str] | None:
    """Rung tokens/s per job from every claim's completed records in ``layout`` (None under 3)."""
    rates, cpus = [], set()
    for path in sorted(Path(records_root).glob("*/*/summary.json")):
        s = json.loads(path.read_text(encoding="utf-8"))
        layout_of = (s.get("record") or {}).get("layout") or {}
        if s.get("status") != "completed" or any(layout_of.get(k) != v for k, v in layout.items()):
            continue
        seconds = cpu_busy_seconds(s)  # the wall clock of a loaded machine would skew it
        if seconds and s.get("tokens") and s.get("flops_per_token"):
            rates.append(s["tokens"] * s["flops_per_token"] / rung_fpt / seconds)
            cpus.add((s.get("provenance") or {}).get("cpu") or "?")
    if len(rates) < 3:
        return None
    key = f"{layout['jobs']}x{layout['threads']}"
    where = ", ".join(sorted(cpus))
    return statistics.median(rates), f"campaign records ({len(rates)} runs at {key}, {where})"


def _seed_lr(overrides: list[str]) -> tuple:
    return tuple(o for o in overrides if o.startswith(("seed=", "optim.lr=")))


def plan_claim(
    claim: Claim,
    rung_fpt: float,
    rate: tuple[float, str],
    records: list[dict],
    composer,
    seen: dict | None = None,
):
    """ArmPlan per arm (composes each distinct job shape once with ``composer``, an open
    :class:`archlab.compose.Composer`). ``seen`` (identity -> claim id, shared across the
    claims of one plan) marks jobs identical to an earlier claim's: trained once, shared."""
    from archlab.claims.records import arm_of, config_identity
    from archlab.claims.registry import signature

    recorded = _recorded_seconds(records, lambda o: arm_of(claim, o, False))
    shapes: dict[frozenset, tuple] = {}
    plans = []
    seen = {} if seen is None else seen
    for arm in claim.arms:
        runs, tokens, seconds, shared, src = 0, [], 0.0, [], rate[1]
        for a, o in claim.jobs(False):
            if a != arm:
                continue
            sig = signature(o)
            if sig not in shapes:
                cfg = composer.compose(o, check=False)
                shapes[sig] = (_shape(cfg), _identity_base(cfg, config_identity))
            shape, ident = shapes[sig]
            key = (ident, _seed_lr(o))
            if seen.setdefault(key, claim.id) != claim.id:
                shared.append(seen[key])
                continue
            runs += 1
            tokens.append(int(shape["tokens"]))
            if recorded.get(arm):
                seconds += statistics.median(recorded[arm])
                src = f"records ({len(recorded[arm])} runs)"
            else:
                work = (shape["tokens"] + shape["eval_tokens"] / 3) * shape["fpt"] / rung_fpt
                seconds += work / rate[0] + STARTUP_SEC
        if shared:
            src += f"; {len(shared)} run(s) shared with {', '.join(sorted(set(shared)))}"
        plans.append(ArmPlan(arm, runs, max(tokens, default=0), seconds / max(runs, 1), src))
    return plans


def _identity_base(cfg, config_identity) -> str:
    """The config's identity without its seed and LR (those come from the job's overrides)."""
    from omegaconf import OmegaConf

    d = OmegaConf.to_container(OmegaConf.structured(cfg))
    d.pop("seed", None)
    d.get("optim", {}).pop("lr", None)
    return config_identity(d)


def _claim_lines(claim: Claim, plans: list[ArmPlan], layout: dict, campaign: dict) -> tuple:
    grid = ", ".join(f"{x:g}" for x in claim.lr_grid or []) or "fixed LR"
    pilot = f", pilot {claim.pilot_seeds}, confirm at most" if claim.pilot_seeds else ", confirm"
    seeds = (
        f"scout {claim.scout_seeds}{pilot} {claim.confirm_seeds}"
        if claim.protocol == "tuned"
        else f"{claim.seeds}" + (f" (fewer: {claim.arm_seeds})" if claim.arm_seeds else "")
    )
    lines = [
        f"{claim.id}: {claim.title}",
        f"  protocol {claim.protocol}; LRs: {grid}; seeds: {seeds}",
    ]
    lines.append(f"  {'arm':18s} {'runs':>5s} {'max tokens':>11s} {'s/run':>7s}  seconds from")
    for p in plans:
        lines.append(f"  {p.arm:18s} {p.runs:5d} {p.tokens:11,d} {p.seconds:7.0f}  {p.source}")
    seconds = sum(p.runs * p.seconds for p in plans)
    cpu_h = seconds * layout["threads"] / 3600
    wall_h = seconds / layout["jobs"] / 3600
    runs = sum(p.runs for p in plans)
    lines.append(
        f"  total: {runs} runs, {wall_h:.1f} h wall at {layout['jobs']} job(s) x "
        f"{layout['threads']} thread(s) = {cpu_h:.1f} CPU-hours"
    )
    lines += _verdict_lines(claim, _compared_tokens(claim, plans), cpu_h, campaign)
    return lines, runs, cpu_h, wall_h


def _compared_tokens(claim: Claim, plans: list[ArmPlan]) -> int:
    """Tokens per run of the compared runs (the largest per arm: scouts and lower rungs are
    shorter), the least over the arms."""
    return min((p.tokens for p in plans if p.runs), default=0)


def _verdict_lines(claim: Claim, tokens: int, cpu_h: float, campaign: dict) -> list[str]:
    out = []
    reasons = exploratory_reasons(claim, tokens, campaign)
    kind = (claim.campaign or {}).get("minimums")
    if reasons:
        out.append(f"  EXPLORATORY ({kind or 'protocol'} minimums): {'; '.join(reasons)}")
    elif kind:
        out.append(f"  meets the {kind} protocol's minimums")
    budget = (claim.campaign or {}).get("cpu_hours")
    if budget is not None and cpu_h > budget:
        out.append(
            f"  DOES NOT FIT its budget of {budget:g} CPU-hours: raise the budget, or shrink it and "
            "let the report say exploratory (campaign.exploratory: true)"
        )
    elif budget is not None:
        out.append(f"  fits its budget of {budget:g} CPU-hours")
    return out


def print_plan(
    claims: list[Claim],
    records_root: Path,
    campaign: dict[str, Any],
    layout: dict,
    calibration: dict | None,
    log=print,
) -> float:
    """Print the plan of every claim; returns the total CPU-hours."""
    from archlab.claims.records import read_summaries
    from archlab.compose import Composer
    from archlab.model.flops import train_flops_per_token

    total_cpu = total_wall = 0.0
    total_runs = 0
    with Composer() as composer:
        rung = composer.compose(campaign.get("rung") or [], check=False)
        rung_fpt = train_flops_per_token(rung.model)
        rate = (
            _rate(calibration, layout)
            or records_rate(records_root, rung_fpt, layout)
            or _field_notes_rate(layout)
        )
        seen: dict = {}
        for claim in claims:
            recs = read_summaries(records_root, claim)
            plans = plan_claim(claim, rung_fpt, rate, recs, composer, seen)
            lines, runs, cpu_h, wall_h = _claim_lines(claim, plans, layout, campaign)
            log("\n".join(lines) + "\n")
            total_cpu, total_wall, total_runs = (
                total_cpu + cpu_h,
                total_wall + wall_h,
                total_runs + runs,
            )
    log(
        f"all: {total_runs} runs, {total_wall:.1f} h wall, {total_cpu:.1f} CPU-hours at "
        f"{layout['jobs']} job(s) x {layout['threads']} thread(s)"
    )
    return total_cpu
