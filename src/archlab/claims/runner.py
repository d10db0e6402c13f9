"""The claims runner behind ``archlab reproduce`` (its CLI: ``campaign.py``): run (or resume) a
claim's sweep, judge it, report it.

Jobs run in this process (one import of torch/Lightning for every claim) through the same
``archlab.train.run.train`` that ``archlab train`` calls, into the sweep layout of
``archlab train -m``: ``<runs>/sweeps/claim-<id>/<override slug>/``. A job whose summary says
completed or diverged is skipped, so an interrupted reproduce resumes where it stopped.
Runs are mapped back to the claim's arms by their recorded overrides.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archlab.claims import checks as C
from archlab.claims.grid_table import grid_lines, margin_lines
from archlab.claims.minimums import exploratory_lines, exploratory_reasons
from archlab.claims.registry import Claim, ClaimError, signature
from archlab.config import ConfigError
from archlab.errors import OneLineParser, first_line
from archlab.runs.compare import CompareError, analyze
from archlab.runs.curves import color
from archlab.runs.load import find_runs
from archlab.runs.naming import job_dirname
from archlab.runs.record import read_summary
from archlab.runs.report import markdown_table, table_rows, write_outputs
from archlab.runs.values import fmt as _fmt
from archlab.runs.values import json_ready, stable_floats

COMMITS = "commits.txt"  # in a claim's sweep dir: one line per reproduce invocation that trained
VERDICT_ICON = {
    "reproduced": "✅",
    "not reproduced": "❌",
    "inconclusive": "❔",
    "not run": "⏸",
    "in progress": "⏳",
}
IN_PROGRESS = "in progress"  # fewer runs recorded than planned: the checks are interim


def sweep_dir(runs_dir: Path, claim: Claim) -> Path:
    return Path(runs_dir) / "sweeps" / f"claim-{claim.id}"


# --------------------------------------------------------------------------- running


def validate_jobs(claim: Claim, smoke: bool) -> None:
    """Compose and validate every arm's jobs up front (one line per mistake, before training)."""
    validate_claims([claim], (smoke,))


def validate_claims(claims: list[Claim], modes=(False,)) -> int:
    """Compose every distinct job of ``claims`` in one Hydra context and validate it like
    ``archlab train`` does (``archlab.cli.prevalidate``), checking each data source once.
    Raises ClaimError naming the claim and arm; returns the number of configs checked."""
    from archlab.compose import Composer  # Hydra + the registries (torch): not for --list
    from archlab.train.faults import (
        check_run_environment,  # with compose: only when validating jobs
    )
    from archlab.train.paths import resolve_user_paths  # (as above)

    seen, sources, n = set(), set(), 0
    with Composer() as composer:
        for claim in claims:
            for smoke in modes:
                for arm, overrides in claim.jobs(smoke):
                    sig = signature(overrides)
                    if sig in seen:
                        continue
                    seen.add(sig)
                    try:
                        cfg = composer.compose(list(overrides))
                        resolve_user_paths(cfg, claim.root)
                        check_run_environment(cfg, data=repr(cfg.data) not in sources)
                        sources.add(repr(cfg.data))
                    except ConfigError as err:
                        raise ClaimError(f"claim {claim.id}, arm {arm}: {err}") from None
                    n += 1
    return n


def _max_steps(overrides: list[str]) -> int | None:
    for o in overrides:
        if o.startswith("train.max_steps="):
            return int(o.split("=", 1)[1])
    return None


def is_done(summary: dict | None, overrides: list[str]) -> bool:
    """Diverged, or completed with every planned step (a run stopped by a signal is not)."""
    if not summary:
        return False
    if summary.get("status") == "diverged":
        return True
    want = _max_steps(overrides)
    return summary.get("status") == "completed" and (
        want is None or summary.get("steps", 0) >= want
    )


def _pending(claim: Claim, runs_dir: Path, jobs) -> list:
    """The jobs' overrides whose runs are not done yet (resumable)."""
    out = []
    for _, o in jobs:
        run_dir = sweep_dir(runs_dir, claim) / job_dirname(o)
        done = read_summary(run_dir) if (run_dir / "summary.json").exists() else None
        if not is_done(done, o):
            out.append(o)
    return out


def _train_one(claim: Claim, runs_dir: Path, overrides: list[str], threads, composer) -> dict:
    from archlab.train.paths import resolve_user_paths  # with train (as below)
    from archlab.train.run import Job, train  # Lightning: only when training (not --report-only)

    name = f"claim-{claim.id}"
    run_dir = sweep_dir(runs_dir, claim) / job_dirname(overrides)
    for stale in ("metrics.jsonl", "summary.json"):  # an interrupted attempt: start over
        (run_dir / stale).unlink(missing_ok=True)
    typed, choices = composer.job([*overrides, f"name={name}", f"out_dir={runs_dir}"])
    resolve_user_paths(typed, claim.root)  # a claim's relative paths: from the project root
    if threads and typed.trainer.threads is None:
        typed.trainer.threads = threads
    job = Job(run_dir=run_dir, overrides=list(overrides), group=name, choices=dict(choices))
    return train(typed, job)


def run_jobs(
    claim: Claim, runs_dir: Path, jobs, threads: int | None, counts: dict, log=print, on_done=None
):
    """Train every job of ``jobs`` not yet done (resumable), updating ``counts``;
    ``on_done(overrides, summary, run_dir)`` is called after each job that trained."""
    from archlab.compose import Composer  # Hydra + the registries (torch): not for --list

    pending = _pending(claim, runs_dir, jobs)
    if pending:  # which code trained these runs (the report lists every commit used)
        sweep_dir(runs_dir, claim).mkdir(parents=True, exist_ok=True)
        with open(sweep_dir(runs_dir, claim) / COMMITS, "a") as f:
            f.write(f"{git_commit()} {time.strftime('%Y-%m-%dT%H:%M:%S')} {len(pending)} jobs\n")
    counts["skipped"] += len(jobs) - len(pending)
    with Composer() as composer:
        for i, overrides in enumerate(pending, 1):
            keep = ("seed=", "optim.lr=")
            picked = " ".join(o for o in overrides if o.startswith(keep))
            tag = f"[{claim.id} {i}/{len(pending)}] {picked}"
            start = time.time()
            try:
                summary = _train_one(claim, runs_dir, overrides, threads, composer)
            except Exception as err:
                counts["failed"] += 1
                log(f"{tag}: failed: {type(err).__name__}: {first_line(err, 200)}")
                continue
            counts["ran"] += 1
            if on_done is not None:
                on_done(overrides, summary, sweep_dir(runs_dir, claim) / job_dirname(overrides))
            vl = summary.get("val_loss")
            vl = "n/a" if vl is None else f"{vl:.4f}"
            log(f"{tag}: {summary['status']} val_loss {vl} ({time.time() - start:.1f} s)")
    return counts


def run_claim(
    claim: Claim, runs_dir: Path, smoke: bool, threads: int | None, log=print, run=None
) -> dict:
    """Pre-register, then run the claim's jobs; a tuned protocol runs scout → pick → (pilot →
    seed plan →) confirm. ``run`` replaces :func:`run_jobs` (same signature), e.g. to record
    runs or run in parallel."""
    from archlab.claims.protocol import picks_from_runs, preregister, record_picks, recorded_picks

    run = run or run_jobs
    sweep = sweep_dir(runs_dir, claim)
    preregister(claim, sweep)
    counts = {"ran": 0, "skipped": 0, "failed": 0}
    if claim.protocol != "tuned":
        return run(claim, runs_dir, claim.jobs(smoke), threads, counts, log)
    scout, _ = claim.seed_split(smoke)
    scouts = [j for j in claim.jobs(smoke) if _seed_of(j[1]) in scout]
    run(claim, runs_dir, scouts, threads, counts, log)
    picks = recorded_picks(sweep)
    if picks is None:  # recorded before any confirm run starts
        picks = picks_from_runs(claim, claim_records(claim, runs_dir, smoke), smoke)
        record_picks(sweep, picks)
        log(f"[{claim.id}] tuned LRs: " + ", ".join(f"{a}={p['lr']}" for a, p in picks.items()))
    lrs = {a: p["lr"] for a, p in picks.items()}
    n_confirm = _pilot_phase(claim, runs_dir, smoke, threads, counts, log, run, picks)
    done = scouts + claim.jobs(smoke, lrs, 0)  # scouts and pilots
    confirm = [j for j in claim.jobs(smoke, lrs, n_confirm) if j not in done]
    return run(claim, runs_dir, confirm, threads, counts, log)


def _pilot_phase(claim: Claim, runs_dir: Path, smoke, threads, counts, log, run, picks):
    """Run the pilot seeds at the picks and record the seed plan before any confirm run;
    returns the number of confirm seeds (None: every listed one, without a pilot)."""
    from archlab.claims.protocol import record_seed_plan, recorded_seed_plan, seed_plan

    if not claim.pilot_seeds:
        return None
    lrs = {a: p["lr"] for a, p in picks.items()}
    pilot = set(claim.pilot_split(smoke))
    jobs = [j for j in claim.jobs(smoke, lrs, 0) if _seed_of(j[1]) in pilot]
    run(claim, runs_dir, jobs, threads, counts, log)
    sweep = sweep_dir(runs_dir, claim)
    plan = recorded_seed_plan(sweep)
    if plan is None:  # recorded before any confirm run starts
        recs = claim_records(claim, runs_dir, smoke)
        top = {
            a: [r for r in rs if claim.on_top_rung(_overrides(r), smoke)] for a, rs in recs.items()
        }
        plan = seed_plan(claim, top, picks, smoke)
        record_seed_plan(sweep, plan)
        capped = f" (capped: the pilot asks for {plan['wanted']})" if plan["capped"] else ""
        log(f"[{claim.id}] confirm seeds from the pilot: {plan['n']}{capped}")
    return int(plan["n"])


def _overrides(record) -> list[str]:
    return list(record.summary.get("overrides") or [])


def _seed_of(overrides: list[str]) -> int | None:
    for o in overrides:
        if o.startswith("seed="):
            return int(o.split("=", 1)[1])
    return None


# --------------------------------------------------------------------------- analysis


def claim_records(claim: Claim, runs_dir: Path, smoke: bool) -> dict[str, list]:
    """arm -> its run records, matched by the recorded overrides (stale runs are ignored)."""
    sigs = claim.arm_signatures(smoke)
    arms: dict[str, list] = {a: [] for a in claim.arms}
    root = sweep_dir(runs_dir, claim)
    if not root.exists():
        return arms
    for record in find_runs([root], warn=lambda m: None):
        overrides = list(record.summary.get("overrides") or [])
        arm = sigs.get(signature(overrides))
        if arm is not None and (record.status != "completed" or is_done(record.summary, overrides)):
            arms[arm].append(record)
    return arms


def git_commit() -> str:
    from archlab.runs.provenance import git_state

    sha, dirty = git_state()
    return sha + ("+dirty" if dirty else "")


def _metric_curve_png(arm_runs: dict[str, list], key: str, path: Path, lrs: dict) -> bool:
    """Mean over seeds of a metrics.jsonl key vs step, one line per arm."""
    import matplotlib  # matplotlib: only when drawing a figure

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after matplotlib.use("Agg")

    fig, ax = plt.subplots(figsize=(6, 3.6))
    drawn = False
    for i, (arm, runs) in enumerate(arm_runs.items()):
        acc: dict[int, list[float]] = {}
        for r in runs:
            if r.status == "failed" or (lrs.get(arm) is not None and C.run_lr(r) != lrs[arm]):
                continue
            for m in r.metrics:
                if C.finite(m.get(key)):
                    acc.setdefault(int(m["step"]), []).append(float(m[key]))
        if acc:
            steps = sorted(acc)
            ys = [sum(acc[s]) / len(acc[s]) for s in steps]
            ax.plot(steps, ys, color=color(i), label=arm, marker="o" if len(steps) == 1 else None)
            drawn = True
    if drawn:
        ax.set(xlabel="step", ylabel=key, title=f"{key} (seed mean)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(path, dpi=90)
    plt.close(fig)
    return drawn


@dataclass
class ClaimAnalysis:
    recs: dict[str, list]
    arms: dict[str, C.ArmData]
    results: list[C.CheckResult]
    verdict: str
    analysis: Any  # runs.compare.Analysis or None
    picks: dict | None
    prereg: dict
    seed_plan: dict | None = None  # tuned with a pilot: the recorded confirm_seeds.json
    progress: dict = field(default_factory=dict)  # {"recorded": n, "planned": N}
    all_recs: dict = field(default_factory=dict)  # every rung's records (recs: the top rung)

    @property
    def every_run(self) -> list:
        return [r for rs in (self.all_recs or self.recs).values() for r in rs]

    @property
    def shown_verdict(self) -> str:
        """The verdict, or "in progress" while runs are missing (an interim verdict decides
        nothing: a partial grid or a missing seed can flip it)."""
        done = self.progress.get("recorded", 0) >= self.progress.get("planned", 0)
        return self.verdict if done else IN_PROGRESS


def refuse_mixed_provenance(claim: Claim, recs: dict[str, list]) -> None:
    from archlab.runs.provenance import RESULT_KEYS, pooling_differences

    diffs = pooling_differences([r for rs in recs.values() for r in rs], RESULT_KEYS)
    if diffs:
        raise ClaimError(f"claim {claim.id}: refusing to pool runs: {'; '.join(diffs)}")


def analyze_claim(claim: Claim, runs_dir: Path, smoke: bool, alpha: float = 0.05):
    from archlab.claims.protocol import (
        confirm_seeds,
        preregistration_status,
        recorded_seed_plan,
        tuned_arms,
    )

    all_recs = claim_records(claim, runs_dir, smoke)
    refuse_mixed_provenance(claim, all_recs)
    recs = {  # the rule is judged on a ladder's last rung
        a: [r for r in rs if claim.on_top_rung(r.summary.get("overrides") or [], smoke)]
        for a, rs in all_recs.items()
    }
    sweep = sweep_dir(runs_dir, claim)
    arm_data, picks = tuned_arms(claim, recs, smoke, sweep)
    results, verdict = C.evaluate(claim.rule, arm_data, claim.baseline, alpha)
    ordered = [claim.baseline] + [a for a in claim.arms if a != claim.baseline]
    records = [r for a in ordered for r in all_recs[a] if r.seed not in claim.pilot_split(smoke)]
    analysis = None
    if records:
        scout, _ = claim.seed_split(smoke)
        confirm = confirm_seeds(claim, smoke, sweep)
        tuned = picks and not set(scout) & set(confirm)  # a 1-seed smoke cannot split seeds
        kw = {"tune": "lr", "scout": scout, "confirm": confirm} if tuned else {}
        if tuned and (claim.scout_overrides or len(claim.rungs(smoke)) > 1):
            # scouts ran shorter (or on one rung only): compare the confirm runs at the picks
            records, kw = [r for r in records if r.seed in confirm], {}
        try:
            analysis = analyze(records, baseline=None, alpha=alpha, **kw)
        except CompareError:
            analysis = None
    prereg = preregistration_status(claim, sweep)
    plan = recorded_seed_plan(sweep) if claim.pilot_seeds else None
    n_confirm = len(plan["confirm_seeds"]) if plan else None  # before the pilot: the cap
    recorded = sum(len(rs) for rs in all_recs.values())  # scouts and pilots included
    progress = {"recorded": recorded, "planned": len(claim.jobs(smoke, None, n_confirm))}
    return ClaimAnalysis(
        recs, arm_data, results, verdict, analysis, picks, prereg, plan, progress, all_recs
    )


# --------------------------------------------------------------------------- report sections


def _figures(claim: Claim, ca: ClaimAnalysis, out: Path, smoke: bool) -> list[Path]:

    pngs: list[Path] = []
    if ca.analysis is not None:
        axes = ["step"] if smoke else ["step", "time"]  # tokens = step × a constant here
        pngs = [p for p in write_outputs(ca.analysis, out, axes) if p.suffix == ".png"]
    keys = {s.get("metric", "").split(":", 1)[1] for s in claim.rule if ":" in s.get("metric", "")}
    keys |= {m.split(":", 1)[1] for m in claim.metrics if ":" in m}
    lrs = {a: d.lr for a, d in ca.arms.items()}
    for key in sorted(keys):
        path = out / f"metric_{key.replace('/', '_').replace('@', '_at_')}.png"
        out.mkdir(parents=True, exist_ok=True)
        if _metric_curve_png(ca.recs, key, path, lrs):
            pngs.append(path)
    return pngs


def no_paths(text: str) -> str:
    """Absolute paths shortened to their last part (a report names no machine's folders)."""
    import re

    return re.sub(r"(?<![\w.])/(?:[^\s/()]+/)+([^\s/()]+)", r"\1", text)


def _header(claim: Claim, ca: ClaimAnalysis, smoke: bool) -> list[str]:
    md = [f"# Claim `{claim.id}`: {claim.title}", "", f"> {claim.claim}", ""]
    smoke_note = " (SMOKE run: pipeline check only, no evidence)" if smoke else ""
    shown = ca.shown_verdict
    md += [f"**Verdict: {VERDICT_ICON.get(shown, '')} {shown}**{smoke_note}", ""]
    if shown == IN_PROGRESS:
        n, total = ca.progress["recorded"], ca.progress["planned"]
        md += [
            f"{n} of {total} planned runs are recorded. The checks below are interim (they "
            f"would say **{ca.verdict}** now) and decide nothing until every run is in.",
            "",
        ]
    head = next((r for r in ca.results if r.headline), None)
    if head and head.numbers.get("diff") is not None:
        md += [
            (
                f"Headline: `{head.check}` {head.arm} vs {head.baseline} on "
                f"`{head.metric}`: {head.evidence}"
            ),
            "",
        ]
    prereg = ca.prereg
    if prereg.get("hash"):
        line = f"Pre-registered: hash `{prereg['hash']}` (recorded at the first run)"
        if prereg["changed_after_data"]:
            changed = ", ".join(prereg["changed_after_data"])
            line += f"; **changed after data: {changed}** (now `{prereg['current_hash']}`)"
        md += [line, ""]
    return md + ["## Sources", ""] + [f"- {s}" for s in claim.sources] + [""]


def _protocol_lines(claim: Claim, ca: ClaimAnalysis, smoke: bool) -> list[str]:
    base, n_seeds, grid = claim.settings(smoke)
    md = [f"- Shared overrides: `{' '.join(base)}`", f"- Arms (baseline **{claim.baseline}**):"]
    md += [f"  - **{a}**: `{' '.join(o) or '(base only)'}`" for a, o in claim.arms.items()]
    fewer = (
        ""
        if smoke or not claim.arm_seeds
        else " except " + ", ".join(f"{a}: {n}" for a, n in claim.arm_seeds.items())
    )
    md += [f"- Seeds: {n_seeds} per arm{fewer}; paired by seed (same batches and windows)"]
    if grid:
        scout, confirm = claim.seed_split(smoke)
        md += [
            (
                f"- LR grid: {', '.join(f'{x:g}' for x in grid)}; each arm's LR tuned on scout "
                f"seeds {scout} (quadratic fit in log LR, snapped to the grid), compared on "
                f"confirm seeds {confirm}"
            )
        ]
        if claim.scout_overrides and not smoke:
            md += [f"  - scouts only: `{' '.join(claim.scout_overrides)}`"]
        for arm, p in (ca.picks or {}).items():
            warn = f" — **{p['warning']}**" if p.get("warning") else ""
            md += [f"  - {arm}: tuned LR {p['lr']} ({p['method']}){warn}"]
    return md + seed_plan_lines(claim, ca.seed_plan, smoke)


def seed_plan_lines(claim: Claim, plan: dict | None, smoke: bool) -> list[str]:
    """How many confirm seeds the pilot asked for, check by check, and whether the cap bound."""
    if not claim.pilot_seeds:
        return []
    pilot = claim.pilot_split(smoke)
    if plan is None:
        return [f"- Pilot seeds {pilot}: no seed plan recorded yet"]
    md = [
        (
            f"- Confirm seeds sized by the pilot (seeds {plan['pilot_seeds']}, never tested): "
            f"n = ⌈((z₁₋α + z_b)·σ/δ)²⌉ + 2 with σ the {plan['ucb']:.0%} one-sided chi-square "
            f"upper bound of the pilot's paired SD, α {plan['alpha']}, power {plan['power']}"
        )
    ]
    for r in plan["checks"]:
        what = f"`{r['check']}` {r['arm']} vs {r['baseline']}"
        if r["n"] is None:
            md += [f"  - {what}: not sized ({r['why']})"]
            continue
        md += [
            (
                f"  - {what} ({r['test']}, δ {_fmt(r['delta'])}): pilot SD {_fmt(r['sd'])} over "
                f"{r['pairs']} pairs, upper bound {_fmt(r['sd_ucb'])} → n = {r['n']}"
            )
        ]
    cap = (
        f" — **capped**: the pilot asks for {plan['wanted']}, the claim allows {plan['cap']}"
        if plan["capped"]
        else ""
    )
    return md + [f"  - confirm seeds used: {plan['confirm_seeds']} (n = {plan['n']}){cap}"]


def _setup_lines(claim: Claim, ca: ClaimAnalysis, runs_dir: Path, smoke: bool, run_info) -> list:
    all_runs = ca.every_run
    md = ["## Setup", ""] + _protocol_lines(claim, ca, smoke)
    md += ["- Budget:", *_budget_lines(claim.budget), f"- Tokens per run: {_tokens_text(all_runs)}"]
    top = [r for rs in ca.recs.values() for r in rs]
    info = next((r.config.get("data_info") for r in all_runs if r.config.get("data_info")), None)
    if info:
        md += [
            (
                f"- Corpus: {no_paths(str(info.get('corpus')))} (fingerprint "
                f"`{info.get('fingerprint')}`, {info.get('train_tokens', 0):,} train tokens, "
                f"tokenizer {info.get('tokenizer')})"
            )
        ]
    md += [
        f"- archlab commits that trained the runs: {run_info['commits']}",
        f"- Machine (from the records): {run_info['machine']}",
        (
            f"- Runs: {len(all_runs)} ({run_info['status_text']}"
            + (f"; {len(top)} on the top rung, where the checks are made" if claim.ladder else "")
            + f"), {run_info['minutes']:.1f} min of training wall time"
        ),
        f"- Records: `experiments/runs/{claim.id}/` (config, summary with provenance, metrics)",
        *_shared_lines(all_runs),
        "",
    ]
    return md


def _shared_lines(runs: list) -> list[str]:
    """Which records were trained by another claim with an identical config (copied here)."""
    sources: dict[str, int] = {}
    for r in runs:
        src = (r.summary.get("record") or {}).get("shared_from")
        if src:
            sources[src.split("/", 1)[0]] = sources.get(src.split("/", 1)[0], 0) + 1
    if not sources:
        return []
    text = ", ".join(f"{n} from `{c}`" for c, n in sorted(sources.items()))
    return [f"- Shared runs (identical resolved configs, trained once): {text}"]


def _checks_lines(ca: ClaimAnalysis, alpha: float) -> list[str]:
    md = [
        "## Checks (decision rule)",
        "",
        (
            f"α = {alpha}; Δ = arm − baseline; δ is the smallest effect of interest fixed in "
            "the claim (nats or % of the baseline mean). Facts hold by construction and are not "
            "evidence. Failure p-values are Holm-adjusted across the required checks."
        ),
        "",
        "| # | check | arm vs baseline | metric | δ | result | p (fail, Holm) | evidence |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(ca.results, 1):
        n = r.numbers
        margin = "—" if n.get("margin") is None else f"{_fmt(n['margin'])} ({n['margin_spec']})"
        kind = (
            f"`{r.check}`" + (" (info)" if not r.required else "") + (" (fact)" if r.fact else "")
        )
        pf = (
            f"{_fmt(n.get('p_fail'))}, {_fmt(n.get('p_fail_holm'))}"
            if n.get("p_fail") is not None
            else "—"
        )
        md += [
            (
                f"| {i} | {kind} | {r.arm} vs {r.baseline} | `{r.metric}` | {margin} | "
                f"**{r.status}** | {pf} | {r.evidence} |"
            )
        ]
    if ca.shown_verdict == IN_PROGRESS:
        return md + ["", f"Interim verdict: **{ca.verdict}** (runs still missing).", ""]
    return md + ["", f"Verdict: **{ca.verdict}**.", ""]


def _results_lines(claim: Claim, ca: ClaimAnalysis, pngs: list[Path]) -> list[str]:
    from archlab.runs.table import relativize

    if ca.analysis is None:
        return ["## Results", "", "No runs found.", ""]
    res = ca.analysis.result
    md = ["## Results (`archlab compare`)", "", markdown_table(*table_rows(res)), ""]
    md += [
        (
            f"Noise floor: baseline seed sd {_fmt(res.get('seed_noise'))}, evaluation se "
            f"{_fmt(res.get('eval_noise'))}; budget: {relativize(res, Path('.'))['setup']['budget']['shared']}"
        ),
        "",
    ]
    if claim.ladder:  # the gap per rung, its trend with compute, the fits
        from archlab.runs.ladder_report import ladder_markdown

        md += [line.replace("## ", "### ", 1) for line in ladder_markdown(res)]
    md += [f"![{p.stem}]({claim.id}/{p.name})" for p in pngs]
    return md + ["", f"Full comparison: [{claim.id}/report.md]({claim.id}/report.md)", ""]


def _tail_lines(claim: Claim, sweep: Path) -> tuple[list[str], list]:
    """Micro-benchmarks (from their records in the sweep: a report times nothing), scale note,
    notes."""
    md, bench = [], []
    if claim.benchmark:
        from archlab.claims.bench import in_report, read_record, to_markdown

        md += ["## Micro-benchmarks", ""]
        for name in claim.benchmark:
            record = read_record(sweep, name)
            bench.append(in_report(record) if record else {"name": name, "result": None})
            md += to_markdown(name, record)
    md += ["## Scale note", "", claim.scale_note, ""]
    if claim.notes:
        md += ["## Notes", ""] + [f"- {n}" for n in claim.notes] + [""]
    return md, bench


def _budget_lines(budget) -> list[str]:
    items = budget.items() if isinstance(budget, dict) else [("as declared", budget)]
    return [f"  - {k}: {v}" for k, v in items]


def _tokens_text(runs: list) -> str:
    """Planned tokens per run with how many runs planned each (scouts and ladder rungs differ),
    most runs first, and the epochs they make of the corpus."""
    counts: dict[tuple, int] = {}
    for r in runs:
        t = r.summary.get("planned_tokens")
        if t:
            key = (int(t), r.summary.get("planned_epochs"))
            counts[key] = counts.get(key, 0) + 1
    if not counts:
        return "not recorded"
    order = sorted(counts, key=lambda k: (-counts[k], -k[0]))
    return ", ".join(
        f"{t:,}" + (f" ({e} epochs)" if e is not None else "") + f" × {counts[(t, e)]} runs"
        for t, e in order
    )


def _run_info(ca: ClaimAnalysis, counts: dict | None = None, wall: float | None = None) -> dict:
    """What the report says about the runs: from the run records only (pure; ``counts`` and
    ``wall`` of this invocation are printed by the CLI, never written into a report)."""
    runs = ca.every_run
    status = {s: sum(r.status == s for r in runs) for s in ("completed", "diverged", "failed")}
    provs = [r.summary.get("provenance") or {} for r in runs]
    commits = sorted(
        {f"{p['commit']}{'+dirty' if p.get('dirty') else ''}" for p in provs if p.get("commit")}
    )
    machines = sorted(
        {
            f"{p.get('cpu')}, {p.get('threads')} threads, torch {p.get('torch')}, "
            f"Python {p.get('python')}"
            for p in provs
            if p.get("cpu")
        }
    )
    return {
        "status": status,
        "status_text": ", ".join(f"{n} {s}" for s, n in status.items()),
        "minutes": sum(float(r.summary.get("elapsed_sec") or 0) for r in runs) / 60,
        "commits": ", ".join(f"`{c}`" for c in commits) or "unknown",
        "commit_list": commits,
        "machine": "; ".join(machines) or "unknown",
    }


def write_report(  # noqa: C901 (split by issue #11)
    claim: Claim,
    runs_dir: Path,
    results_dir: Path,
    smoke: bool,
    counts: dict | None,
    wall: float | None,
    alpha: float = 0.05,
) -> dict:
    ca = analyze_claim(claim, runs_dir, smoke, alpha)
    out = Path(results_dir) / claim.id
    pngs = _figures(claim, ca, out, smoke)
    info = _run_info(ca, counts, wall)
    md = _header(claim, ca, smoke) + exploratory_lines(claim, _tokens_per_run(ca))
    md += _setup_lines(claim, ca, runs_dir, smoke, info)
    md += _checks_lines(ca, alpha) + margin_lines(claim) + grid_lines(claim, ca.recs)
    md += _results_lines(claim, ca, pngs)
    tail, bench = _tail_lines(claim, sweep_dir(runs_dir, claim))
    Path(results_dir).mkdir(parents=True, exist_ok=True)
    (Path(results_dir) / f"{claim.id}.md").write_text("\n".join(md + tail), encoding="utf-8")
    html = out / "report.html"
    if html.exists() and html.stat().st_size > 2_000_000:
        html.unlink()  # too big to commit; report.md + PNGs carry the same content
    summary = _summary(claim, ca, smoke, info, bench, runs_dir)
    text = json.dumps(stable_floats(json_ready(summary)), indent=2) + "\n"
    (Path(results_dir) / f"{claim.id}.json").write_text(text, encoding="utf-8")
    return summary


def _tokens_per_run(ca: ClaimAnalysis) -> int | None:
    """Tokens per run as recorded (planned, else the most any run trained; None without runs)."""
    runs = [r for rs in ca.recs.values() for r in rs]
    planned = [r.summary.get("planned_tokens") or r.summary.get("tokens") for r in runs]
    planned = [int(t) for t in planned if t]
    return max(planned) if planned else None


def _summary(claim: Claim, ca: ClaimAnalysis, smoke: bool, info: dict, bench, runs_dir) -> dict:
    head = next((r for r in ca.results if r.headline), None)
    return {
        "id": claim.id,
        "title": claim.title,
        "claim": claim.claim,
        "verdict": ca.shown_verdict,
        "interim_verdict": ca.verdict if ca.shown_verdict == IN_PROGRESS else None,
        "progress": ca.progress,
        "exploratory": exploratory_reasons(claim, _tokens_per_run(ca)),
        "smoke": smoke,
        "trained_at": info["commit_list"],
        "train_minutes": round(info["minutes"], 2),
        "machine": info["machine"],
        "runs": info["status"],
        "budget": claim.budget,
        "seeds": claim.settings(smoke)[1],
        "lr_grid": claim.settings(smoke)[2],
        "lr_picks": ca.picks,
        **({"seed_plan": ca.seed_plan} if claim.pilot_seeds else {}),
        "preregistration": {k: v for k, v in ca.prereg.items() if k != "recorded_at"},
        "checks": [r.as_dict() for r in ca.results],
        "benchmarks": bench,
        "headline": head.as_dict() if head else None,
    }


# --------------------------------------------------------------------------- summary table


def _effect(summary: dict) -> str:
    h = summary.get("headline") or {}
    n = h.get("numbers") or {}
    if n.get("diff") is None:
        return "—"
    ci = f" [{_fmt(n['ci_low'])}, {_fmt(n['ci_high'])}]" if n.get("ci_low") is not None else ""
    return f"{h['metric']}: {h['arm']} − {h['baseline']} = {_fmt(n['diff'])}{ci}"


def _cell(text: str) -> str:
    """Text for a Markdown table cell (a bare | would end the cell)."""
    return text.replace("|", "\\|")


def legacy_verdict(results_dir: Path, claim_id: str) -> str | None:
    """The verdict line of a claim's superseded 150-step report, if it has one."""
    f = Path(results_dir) / "legacy" / f"{claim_id}.md"
    if not f.exists():
        return None
    m = re.search(r"^\*\*Verdict: (.+?)\*\*", f.read_text(encoding="utf-8"), re.M)
    return m.group(1).strip() if m else None


def _verdict_text(summary: dict) -> str:
    """A claim's verdict with its icon (and its progress while in progress)."""
    text = f"{VERDICT_ICON.get(summary['verdict'], '')} {summary['verdict']}"
    if summary["verdict"] == IN_PROGRESS:
        p = summary["progress"]
        text += f" ({p['recorded']}/{p['planned']} runs)"
    return text


def against_legacy(
    claims: list[Claim], summaries: dict[str, dict | None], results_dir: Path, rel: str
) -> list[str]:
    """The "what changed from the 150-step runs, and why" section of the summary."""
    rows = []
    for c in claims:
        old = legacy_verdict(results_dir, c.id)
        if old is None and not c.vs_legacy:
            continue
        s = summaries[c.id]
        now = _verdict_text(s) if s else "⏸ not run"
        was = f"[{old}]({os.path.normpath(f'{rel}/legacy/{c.id}.md')})" if old else "— (new claim)"
        rows.append(f"| {c.id} | {was} | {now} | {_cell(c.vs_legacy or '—')} |")
    if not rows:
        return []
    return [
        "## Against the 150-step runs",
        "",
        "The first reproduction trained 2-layer, d_model 64 models for 150 steps of 16×64 tokens",
        "(about 150k tokens per run), mostly at one untuned LR, under decision rules some of which",
        "were wrong. What each claim does differently now, and why:",
        "",
        "| claim | 150-step verdict | now | what changed, and why |",
        "|---|---|---|---|",
        *rows,
        "",
    ]


def write_summary_table(claims: list[Claim], results_dir: Path, path: Path) -> None:
    rel = os.path.relpath(results_dir, path.parent)
    files = {c.id: Path(results_dir) / f"{c.id}.json" for c in claims}
    summaries = {k: json.loads(f.read_text()) if f.exists() else None for k, f in files.items()}
    rows = []
    for i, c in enumerate(claims, 1):
        s = summaries[c.id]
        if s is None:
            legacy = Path(results_dir) / "legacy" / f"{c.id}.md"
            old = f" ([150-step legacy]({rel}/legacy/{c.id}.md))" if legacy.exists() else ""
            rows.append(f"| {i} | {c.id} | {_cell(c.claim)} | ⏸ not run{old} | — | — | — |")
            continue
        budget = f"{s['seeds']} seeds" + (f" × {len(s['lr_grid'])} LRs" if s.get("lr_grid") else "")
        budget += f", {s['budget'].get('steps', '?')} steps; {sum(s['runs'].values())} runs"
        if s["runs"].get("diverged"):
            budget += f" ({s['runs']['diverged']} diverged)"
        marks = {"pass": "✓", "fail": "✗", "unknown": "?"}
        checks = " ".join(
            f"{marks[k['status']]}&nbsp;{k['check']}&nbsp;{k['arm']}"
            for k in s["checks"]
            if k["required"]
        )
        rows.append(
            f"| {i} | [{c.id}]({rel}/{c.id}.md) | {_cell(c.claim)} | {_verdict_text(s)} | {_effect(s)} | "
            f"{checks} | {budget} |"
        )
    done = [d for d in summaries.values() if d is not None]
    total_runs = sum(sum(d["runs"].values()) for d in done)
    total_min = sum(d.get("train_minutes") or 0 for d in done)
    text = [
        "# Lecture claims: reproduced at CPU scale (the campaign)",
        "",
        "Each claim is `experiments/claims/<id>.yaml` (arms, seeds, budget, decision rule);",
        "`archlab reproduce <id>` (or `all`) runs or resumes its sweep and writes",
        "`experiments/results/<id>.md` with the setup, curves, table, checks and verdict.",
        "Verdicts: **reproduced** (every required check holds), **not reproduced** (a check fails",
        "after Holm's adjustment: an effect on the wrong side, or demonstrably none of interest),",
        "**inconclusive** otherwise (docs/comparing.md). Effects are arm − baseline, 95% CIs.",
        "Everything runs on a 2-core CPU with tiny models: read each result's scale note.",
        "",
        "| # | claim | statement | verdict | headline effect [95% CI] | required checks (✓ pass, ✗ fail, ? unknown) | budget |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"In total {total_runs} runs with committed records, {total_min:.0f} minutes of training",
        "wall time on a shared 2-core CPU, by default at the standard rung (4 layers, d_model 128,",
        "4 heads, T=128, batch 16, byte-level Python 3.11.7 stdlib corpus pinned by content hash);",
        "a claim that departs from it (a ladder's other sizes, a longer context, another corpus)",
        "says so in its scale note. Verdicts hold for this scale only; each result's scale note",
        "says what needs more.",
        "",
        "How to run, resume and extend the campaign: [CAMPAIGN.md](CAMPAIGN.md). Each run's record",
        "is `experiments/runs/<id>/<run>/` (committed); `archlab reproduce <id>` skips what is",
        "recorded; `archlab reproduce all --report-only` rebuilds every report from the records",
        "(CI checks that this changes nothing). The superseded 150-step results, which have no",
        "records, are in [results/legacy/](results/legacy/README.md).",
        "",
        *against_legacy(claims, summaries, results_dir, rel),
    ]
    path.write_text("\n".join(text), encoding="utf-8")


# --------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        error_type=ClaimError,
        prog="archlab reproduce",
        description="run a lecture claim's sweep and write its verdict",
    )
    p.add_argument("claim", nargs="*", help="claim id(s) (experiments/claims/<id>.yaml) or all")
    p.add_argument(
        "--claims-dir",
        metavar="DIR",
        help="the claim files (default: experiments/claims/ in the working directory or above)",
    )
    p.add_argument(
        "--smoke",
        action="store_true",
        help="reduced run (claim's smoke overrides); writes under a temp dir, not experiments/",
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        help="root for runs/ and results/ (default: the claims dir's parent, experiments/, "
        "or $TMPDIR/archlab-claims-smoke with --smoke)",
    )
    p.add_argument("--runs-dir", metavar="DIR", help="where the runs go (default: <out>/runs)")
    p.add_argument("--results-dir", metavar="DIR", help="where reports go (default: <out>/results)")
    p.add_argument(
        "--threads", type=int, default=None, help="CPU threads per job (default: min(2, cores))"
    )
    p.add_argument(
        "--report-only", action="store_true", help="do not train; rebuild the reports from the runs"
    )
    p.add_argument("--list", action="store_true", help="list the claims and exit")
    p.add_argument("--alpha", type=float, default=0.05)
    return p


def output_dirs(args, experiments: Path) -> tuple[Path, Path]:
    """(runs dir, results dir) from --out / --smoke / --runs-dir / --results-dir."""
    if args.out:
        root = Path(args.out)
        runs_dir, results_dir = root / "runs", root / "results"
    elif args.smoke:
        root = Path(tempfile.gettempdir()) / "archlab-claims-smoke"
        runs_dir, results_dir = root / "runs", root / "results"
    else:
        runs_dir, results_dir = experiments / "runs", experiments / "results"
    runs_dir = Path(args.runs_dir) if args.runs_dir else runs_dir
    results_dir = Path(args.results_dir) if args.results_dir else results_dir
    return runs_dir.resolve(), results_dir.resolve()


def runnable_claims(claims: list[Claim], args) -> list[Claim]:
    """The claims whose requirements exist, each validated up front (unless --report-only)."""
    runnable = []
    for c in claims:
        missing = c.missing_requirements()
        if missing:
            print(
                f"archlab reproduce: skipping {c.id}: missing {', '.join(missing)}",
                file=sys.stderr,
            )
            continue
        if not args.report_only:
            validate_jobs(c, args.smoke)
        runnable.append(c)
    return runnable
