"""``archlab reproduce <id>|all [--smoke]``: run (or resume) a claim's sweep, judge it, report it.

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
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from archlab.claims import checks as C
from archlab.claims.bench import BENCHMARKS, to_markdown
from archlab.claims.registry import Claim, ClaimError, find_claims_dir, get, load_all, signature
from archlab.config import ConfigError
from archlab.errors import OneLineParser, first_line
from archlab.runs.compare import CompareError, analyze
from archlab.runs.load import find_runs
from archlab.runs.machine import describe_machine
from archlab.runs.naming import job_dirname
from archlab.runs.record import read_summary
from archlab.runs.report import color, markdown_table, table_rows, write_outputs
from archlab.runs.values import finite, json_ready
from archlab.runs.values import fmt as _fmt

COMMITS = "commits.txt"  # in a claim's sweep dir: one line per reproduce invocation that trained
VERDICT_ICON = {"reproduced": "✅", "not reproduced": "❌", "inconclusive": "❔", "not run": "⏸"}


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


def run_jobs(claim: Claim, runs_dir: Path, smoke: bool, threads: int | None, log=print) -> dict:
    """Train every job not yet done; returns counts."""
    from archlab.compose import Composer  # Hydra + the registries (torch): not for --list
    from archlab.train.run import Job, train  # Lightning: only when training (not --report-only)

    jobs = claim.jobs(smoke)
    name = f"claim-{claim.id}"
    counts = {"ran": 0, "skipped": 0, "failed": 0}
    pending = [
        o
        for _, o in jobs
        if not is_done(
            read_summary(sweep_dir(runs_dir, claim) / job_dirname(o))
            if (sweep_dir(runs_dir, claim) / job_dirname(o) / "summary.json").exists()
            else None,
            o,
        )
    ]
    if pending:  # which code trained these runs (the report lists every commit used)
        sweep_dir(runs_dir, claim).mkdir(parents=True, exist_ok=True)
        with open(sweep_dir(runs_dir, claim) / COMMITS, "a") as f:
            f.write(f"{git_commit()} {time.strftime('%Y-%m-%dT%H:%M:%S')} {len(pending)} jobs\n")
    with Composer() as composer:
        for i, (arm, overrides) in enumerate(jobs, 1):
            run_dir = sweep_dir(runs_dir, claim) / job_dirname(overrides)
            done = read_summary(run_dir) if (run_dir / "summary.json").exists() else None
            tag = f"[{claim.id} {i}/{len(jobs)}] {arm} {' '.join(o for o in overrides if o.startswith(('seed=', 'optim.lr=')))}"
            if is_done(done, overrides):
                counts["skipped"] += 1
                continue
            for stale in ("metrics.jsonl", "summary.json"):  # an interrupted attempt: start over
                (run_dir / stale).unlink(missing_ok=True)
            typed, choices = composer.job([*overrides, f"name={name}", f"out_dir={runs_dir}"])
            if threads and typed.trainer.threads is None:
                typed.trainer.threads = threads
            job = Job(run_dir=run_dir, overrides=list(overrides), group=name, choices=dict(choices))
            start = time.time()
            try:
                summary = train(typed, job)
            except Exception as err:
                counts["failed"] += 1
                log(f"{tag}: failed: {type(err).__name__}: {first_line(err, 200)}")
                continue
            counts["ran"] += 1
            vl = summary.get("val_loss")
            log(
                f"{tag}: {summary['status']} val_loss "
                f"{'n/a' if vl is None else f'{vl:.4f}'} ({time.time() - start:.1f} s)"
            )
    return counts


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
    """The commit of the archlab code that runs (``+dirty`` if src/ or conf/ changed);
    ``unknown`` outside a git checkout (a wheel install)."""
    here = str(Path(__file__).resolve().parent)
    try:
        sha = subprocess.run(
            ["git", "-C", here, "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            [
                "git",
                "-C",
                here,
                "status",
                "--porcelain",
                "--",
                ":(top)src",
                ":(top)conf",
                ":(top,exclude)src/archlab/claims",
            ],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return (sha or "unknown") + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


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
                if finite(m.get(key)):
                    acc.setdefault(int(m["step"]), []).append(float(m[key]))
        if acc:
            steps = sorted(acc)
            ax.plot(steps, [sum(acc[s]) / len(acc[s]) for s in steps], color=color(i), label=arm)
            drawn = True
    if drawn:
        ax.set_xlabel("step")
        ax.set_ylabel(key)
        ax.set_title(f"{key} (seed mean)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(path, dpi=90)
    plt.close(fig)
    return drawn


def analyze_claim(claim: Claim, runs_dir: Path, smoke: bool, alpha: float = 0.05):
    recs = claim_records(claim, runs_dir, smoke)
    arm_data = {a: C.ArmData(a, rs) for a, rs in recs.items()}
    _, _, grid = claim.settings(smoke)
    C.assign_lrs(arm_data, grid)
    results, verdict = C.evaluate(claim.rule, arm_data, claim.baseline, alpha)
    ordered = [claim.baseline] + [a for a in claim.arms if a != claim.baseline]
    records = [r for a in ordered for r in recs[a]]
    analysis = None
    if records:
        try:
            analysis = analyze(records, baseline=None, alpha=alpha)
        except CompareError:
            analysis = None
    return recs, arm_data, results, verdict, analysis


def write_report(  # noqa: C901 (split by issue #11)
    claim: Claim,
    runs_dir: Path,
    results_dir: Path,
    smoke: bool,
    counts: dict | None,
    wall: float | None,
    alpha: float = 0.05,
) -> dict:
    recs, arm_data, results, verdict, analysis = analyze_claim(claim, runs_dir, smoke, alpha)
    out = Path(results_dir) / claim.id
    pngs: list[Path] = []
    if analysis is not None:
        axes = ["step"] if smoke else ["step", "time"]  # tokens = step × a constant here
        pngs = [p for p in write_outputs(analysis, out, axes) if p.suffix == ".png"]
    metric_keys = sorted(
        {
            spec.get("metric", "").split(":", 1)[1]
            for spec in claim.rule
            if ":" in spec.get("metric", "")
        }
        | {m.split(":", 1)[1] for m in claim.metrics if ":" in m}
    )
    lrs = {a: d.lr for a, d in arm_data.items()}
    for key in metric_keys:
        path = out / f"metric_{key.replace('/', '_').replace('@', '_at_')}.png"
        out.mkdir(parents=True, exist_ok=True)
        if _metric_curve_png(recs, key, path, lrs):
            pngs.append(path)

    base, n_seeds, grid = claim.settings(smoke)
    all_runs = [r for rs in recs.values() for r in rs]
    status_count = {
        s: sum(r.status == s for r in all_runs) for s in ("completed", "diverged", "failed")
    }
    data_info = (
        next((r.config.get("data_info") for r in all_runs if r.config.get("data_info")), {}) or {}
    )
    tokens = next(
        (r.summary.get("planned_tokens") for r in all_runs if r.summary.get("planned_tokens")), None
    )
    epochs = next(
        (
            r.summary.get("planned_epochs")
            for r in all_runs
            if r.summary.get("planned_epochs") is not None
        ),
        None,
    )
    headline = next((r for r in results if r.headline), None)
    commit = git_commit()
    mach = describe_machine()

    label_of = {}
    if analysis is not None:
        for arm in analysis.arms:
            src = {r.source for r in arm.runs}
            for name, rs in recs.items():
                if rs and src & {r.source for r in rs}:
                    label_of[arm.label] = name

    md = [f"# Claim `{claim.id}`: {claim.title}", "", f"> {claim.claim}", ""]
    md += [
        f"**Verdict: {VERDICT_ICON.get(verdict, '')} {verdict}**"
        + (" (SMOKE run: pipeline check only, no evidence)" if smoke else ""),
        "",
    ]
    if headline and headline.numbers.get("diff") is not None:
        md += [
            f"Headline: `{headline.check}` {headline.arm} vs {headline.baseline} on "
            f"`{headline.metric}`: {headline.evidence}",
            "",
        ]
    md += ["## Sources", ""] + [f"- {s}" for s in claim.sources] + [""]
    md += ["## Setup", ""]
    md += [f"- Shared overrides: `{' '.join(base)}`"]
    md += [f"- Arms (baseline **{claim.baseline}**):"]
    md += [f"  - **{a}**: `{' '.join(o) or '(base only)'}`" for a, o in claim.arms.items()]
    fewer = (
        ""
        if smoke or not claim.arm_seeds
        else " except " + ", ".join(f"{a}: {n}" for a, n in claim.arm_seeds.items())
    )
    md += [
        f"- Seeds: {n_seeds} per arm (0…{n_seeds - 1}){fewer}; paired by seed (same batches "
        "and validation windows per seed); the baseline's seeds measure the seed noise"
    ]
    if grid:
        md += [
            f"- LR grid: {', '.join(f'{x:g}' for x in grid)} (each arm compared at its own "
            "best LR; LR sensitivity per seed over the grid)"
        ]
    md += [
        f"- Budget: {json.dumps(claim.budget)}"
        + (f"; {tokens:,} tokens per run ({epochs} epochs of the training split)" if tokens else "")
    ]
    if data_info:
        md += [
            f"- Corpus: {data_info.get('corpus')} (fingerprint `{data_info.get('fingerprint')}`, "
            f"{data_info.get('train_tokens', 0):,} train tokens, tokenizer "
            f"{data_info.get('tokenizer')})"
        ]
    trained = []
    if (sweep_dir(runs_dir, claim) / COMMITS).exists():
        trained = sorted(
            {
                ln.split()[0]
                for ln in (sweep_dir(runs_dir, claim) / COMMITS).read_text().splitlines()
                if ln.strip()
            }
        )
    md += [
        f"- archlab commit: runs trained at `{', '.join(trained) or 'unknown'}`; report written at "
        f"`{commit}`"
        + (
            " (`+dirty`: uncommitted changes to the training code in src/ or conf/)"
            if commit.endswith("+dirty")
            else ""
        ),
        f"- Machine: {mach}",
    ]
    cpu_time = sum(float(r.summary.get("elapsed_sec") or 0) for r in all_runs)
    md += [
        f"- Runs: {len(all_runs)} ({status_count['completed']} completed, "
        f"{status_count['diverged']} diverged, {status_count['failed']} failed), "
        f"{cpu_time / 60:.1f} min of training wall time in total"
        + (
            f"; this invocation trained {counts['ran']}, skipped {counts['skipped']} "
            f"already done, in {wall:.0f} s"
            if counts and wall is not None
            else ""
        )
    ]
    md += [f"- Runs on disk: `{sweep_dir(runs_dir, claim)}` (not committed)", ""]
    md += [
        "## Checks (decision rule)",
        "",
        f"Significance level {alpha}; {1 - alpha:.0%} CIs (t-intervals); Δ = arm − baseline. "
        "Margins are stated per check (`x%` of the baseline mean, `xstd` × the measured "
        "baseline seed std).",
        "",
    ]
    md += [
        "| # | check | arm vs baseline | metric | margin | result | evidence |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(results, 1):
        margin = r.numbers.get("margin")
        mtxt = "—" if margin is None else f"{_fmt(margin)} ({r.numbers.get('margin_spec')})"
        req = "" if r.required else " (info)"
        md += [
            f"| {i} | `{r.check}`{req} | {r.arm} vs {r.baseline} | `{r.metric}` | {mtxt} | "
            f"**{r.status}** | {r.evidence} |"
        ]
    md += [
        "",
        f"Verdict rule: reproduced if every required check passes, not reproduced if any "
        f"fails, inconclusive otherwise → **{verdict}**.",
        "",
    ]
    if analysis is not None:
        res = analysis.result
        md += ["## Results (`archlab compare`)", ""]
        if label_of:
            md += [
                "Arm names: "
                + "; ".join(f"`{lab}` = **{name}**" for lab, name in label_of.items()),
                "",
            ]
        md += [markdown_table(*table_rows(res)), ""]
        md += [
            f"Baseline seed noise (std of final val loss over seeds): {_fmt(res.get('seed_noise'))}",
            "",
        ]
        for p in pngs:
            md += [f"![{p.stem}]({claim.id}/{p.name})", ""]
        md += [
            f"Full comparison: [{claim.id}/report.md]({claim.id}/report.md), "
            f"[compare.json]({claim.id}/compare.json)",
            "",
        ]
    else:
        md += ["## Results", "", "No runs found.", ""]
    bench_results = []
    if claim.benchmark:
        md += ["## Micro-benchmarks", ""]
        for name in claim.benchmark:
            res = BENCHMARKS[name](smoke)
            bench_results.append(res)
            md += to_markdown(res)
    md += ["## Scale note", "", claim.scale_note, ""]
    if claim.notes:
        md += ["## Notes", ""] + [f"- {n}" for n in claim.notes] + [""]
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / f"{claim.id}.md").write_text("\n".join(md), encoding="utf-8")
    html = out / "report.html"
    if html.exists() and html.stat().st_size > 2_000_000:
        html.unlink()  # too big to commit; report.md + PNGs carry the same content
    summary = {
        "id": claim.id,
        "title": claim.title,
        "claim": claim.claim,
        "verdict": verdict,
        "smoke": smoke,
        "commit": commit,
        "trained_at": trained,
        "train_minutes": round(cpu_time / 60, 2),
        "machine": mach,
        "runs": status_count,
        "budget": claim.budget,
        "seeds": n_seeds,
        "lr_grid": grid,
        "checks": [r.as_dict() for r in results],
        "benchmarks": bench_results,
        "headline": headline.as_dict() if headline else None,
    }
    (results_dir / f"{claim.id}.json").write_text(
        json.dumps(json_ready(summary), indent=2) + "\n", encoding="utf-8"
    )
    return summary


# --------------------------------------------------------------------------- summary table


def _effect(summary: dict) -> str:
    h = summary.get("headline") or {}
    n = h.get("numbers") or {}
    if n.get("diff") is None:
        return "—"
    ci = f" [{_fmt(n['ci_low'])}, {_fmt(n['ci_high'])}]" if n.get("ci_low") is not None else ""
    return f"{h['metric']}: {h['arm']} − {h['baseline']} = {_fmt(n['diff'])}{ci}"


def write_summary_table(claims: list[Claim], results_dir: Path, path: Path) -> None:
    rel = os.path.relpath(results_dir, path.parent)
    rows = []
    for i, c in enumerate(claims, 1):
        f = Path(results_dir) / f"{c.id}.json"
        s = json.loads(f.read_text()) if f.exists() else None
        if s is None:
            rows.append(f"| {i} | [{c.id}]({rel}/{c.id}.md) | {c.claim} | ⏸ not run | — | — | — |")
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
            f"| {i} | [{c.id}]({rel}/{c.id}.md) | {c.claim} | {VERDICT_ICON.get(s['verdict'], '')} "
            f"{s['verdict']} | {_effect(s)} | {checks} | {budget} |"
        )
    done = [
        json.loads((Path(results_dir) / f"{c.id}.json").read_text())
        for c in claims
        if (Path(results_dir) / f"{c.id}.json").exists()
    ]
    total_runs = sum(sum(d["runs"].values()) for d in done)
    total_min = sum(d.get("train_minutes") or 0 for d in done)
    text = [
        "# Lecture claims: reproduced at CPU scale",
        "",
        "Each claim is `experiments/claims/<id>.yaml` (arms, seeds, budget, decision rule);",
        "`archlab reproduce <id>` (or `all`) runs or resumes its sweep and writes",
        "`experiments/results/<id>.md` with the setup, curves, table, checks and verdict.",
        "Verdicts: **reproduced** (every check of the rule passes), **not reproduced** (a check",
        "fails: significant opposite effect or demonstrably no effect), **inconclusive** (seed noise",
        "too large at this budget). Effect sizes are arm − baseline with 95% CIs over seeds.",
        "Everything runs on a 2-core CPU with tiny models: read each result's scale note.",
        "",
        "| # | claim | statement | verdict | headline effect [95% CI] | required checks (✓ pass, ✗ fail, ? unknown) | budget |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"In total {total_runs} runs, {total_min:.0f} minutes of training wall time on a shared 2-core",
        "CPU (tiny models: 2–8 layers, d_model 32–64, 64-token context; 150–600 steps of 16×64",
        "tokens from the Python standard library, a single-epoch regime). Verdicts hold for this",
        "scale only; each result's scale note says what the literature needs scale for.",
        "",
        "Reproduce one: `archlab reproduce <id>`; all: `archlab reproduce all`; the CI smoke of",
        "every claim (2 steps, 1 seed, nothing written here): `archlab reproduce all --smoke`.",
        "Runs go to `experiments/runs/` (not committed); re-running resumes.",
        "",
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


def _output_dirs(args, experiments: Path) -> tuple[Path, Path]:
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


def _runnable(claims: list[Claim], args) -> list[Claim]:
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


def _reproduce(c: Claim, args, runs_dir: Path, results_dir: Path, threads: int) -> dict:
    """Train (unless --report-only) and judge one claim; returns its summary."""
    start = time.time()
    counts = None
    if not args.report_only:
        print(
            f"archlab reproduce: {c.id}: {len(c.jobs(args.smoke))} jobs → {sweep_dir(runs_dir, c)}",
            flush=True,
        )
        counts = run_jobs(c, runs_dir, args.smoke, threads, log=lambda m: print(m, flush=True))
    elapsed = None if args.report_only else time.time() - start
    return write_report(c, runs_dir, results_dir, args.smoke, counts, elapsed, args.alpha)


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        claims_dir = Path(args.claims_dir) if args.claims_dir else find_claims_dir()
        experiments = claims_dir.resolve().parent  # results/, runs/ and README.md beside claims/
        if args.list:
            for c in load_all(claims_dir):
                print(f"{c.id:24s} {c.claim}")
            return 0
        if not args.claim:
            raise ClaimError("give a claim id or all (archlab reproduce --list shows them)")
        if "all" in args.claim:
            claims = load_all(claims_dir)
        else:
            claims = [get(c, claims_dir) for c in args.claim]
        runs_dir, results_dir = _output_dirs(args, experiments)
        threads = args.threads or min(2, os.cpu_count() or 1)
        runnable = _runnable(claims, args)
    except ClaimError as err:
        print(f"archlab reproduce: error: {err}", file=sys.stderr)
        return 2
    except SystemExit as exit_:  # --help
        return int(exit_.code or 0)
    os.environ.setdefault("WANDB_MODE", "offline")
    for c in runnable:
        s = _reproduce(c, args, runs_dir, results_dir, threads)
        print(
            f"archlab reproduce: {c.id}: {s['verdict']} ({_effect(s)}) → "
            f"{results_dir / (c.id + '.md')}",
            flush=True,
        )
        if results_dir == (experiments / "results").resolve() and not args.smoke:
            write_summary_table(load_all(claims_dir), results_dir, experiments / "README.md")
        elif args.smoke:
            write_summary_table(load_all(claims_dir), results_dir, results_dir / "README.md")
    return 0
