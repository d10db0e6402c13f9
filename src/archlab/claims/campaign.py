"""``archlab reproduce``: the campaign around the claims runner (issue #12).

``archlab reproduce <id>|all`` (default roots: ``experiments/``):

1. checks every claim before any training: jobs compose and validate; (not ``--smoke``) the
   corpus is the campaign's pinned one (``pin.py``) and this machine's provenance matches the
   claim's records (numerics, torch, Python, CPU, corpus: the runner's pooling keys);
2. restores the claim's records into a scratch sweep outside git (``--scratch``), so what is
   recorded is skipped, then trains the rest through the runner (``jobs`` × ``threads``),
   recording each run as it finishes under ``experiments/runs/<claim>/<run>/`` (records.py);
3. writes the report from the records alone (a fresh restore into a temporary dir), so
   ``--report-only`` on any machine rewrites the same Markdown and JSON.

``--plan`` prints the cost (plan.py); ``--calibrate`` measures the layouts (layout.py);
``--pin-corpus`` takes the corpus pin.
"""

from __future__ import annotations

import functools
import os
import sys
import tempfile
import time
from pathlib import Path

from archlab.claims import layout as L
from archlab.claims import pin as P
from archlab.claims import records as R
from archlab.claims.minimums import load_campaign
from archlab.claims.registry import REPO, Claim, ClaimError, get, load_all
from archlab.claims.runner import (
    RESULTS_DIR,
    RUNS_DIR,
    SUMMARY_MD,
    build_parser,
    run_claim,
    sweep_dir,
    validate_jobs,
    write_report,
    write_summary_table,
)

SCRATCH = Path(os.path.expanduser(os.environ.get("ARCHLAB_SCRATCH") or "~/.cache/archlab/scratch"))


def parser():
    p = build_parser()
    p.add_argument("--plan", action="store_true", help="print arms, LRs, seeds, cost; no training")
    p.add_argument("--calibrate", action="store_true", help="measure the layouts' tokens/s here")
    p.add_argument("--calibrate-steps", type=int, default=200, help=argparse_hide())
    p.add_argument(
        "--pin-corpus", action="store_true", help="record the corpus pin (no records yet)"
    )
    p.add_argument("--jobs", type=int, default=None, help="parallel jobs (default: campaign.yaml)")
    p.add_argument("--scratch", metavar="DIR", help="where runs train (default: outside git)")
    return p


def argparse_hide():
    import argparse

    return argparse.SUPPRESS


def _roots(args) -> tuple[Path, Path, Path]:
    """(records root, results dir, scratch root)."""
    if args.out:
        root = Path(args.out)
        records, results, scratch = root / "runs", root / "results", root / "scratch"
    elif args.smoke:
        root = Path(tempfile.gettempdir()) / "archlab-claims-smoke"
        records, results, scratch = root / "runs", root / "results", root / "scratch"
    else:
        records, results, scratch = RUNS_DIR, RESULTS_DIR, SCRATCH
    records = Path(args.runs_dir) if args.runs_dir else records
    results = Path(args.results_dir) if args.results_dir else results
    scratch = Path(args.scratch) if args.scratch else scratch
    return records.resolve(), results.resolve(), scratch.resolve()


def _layout(args, campaign: dict) -> dict:
    lay = {**_default_layout(), **(campaign.get("layout") or {})}
    if args.jobs:
        lay["jobs"] = args.jobs
    if args.threads:
        lay["threads"] = args.threads
    if lay["jobs"] < 1 or lay["threads"] < 1:
        raise ClaimError(f"layout {lay['jobs']} jobs x {lay['threads']} threads: both must be >= 1")
    return lay


def _default_layout() -> dict:
    return {"jobs": 1, "threads": min(2, os.cpu_count() or 1)}


def _data_cfgs(claim: Claim) -> list:
    """The data config of one job per arm (composed like the runner does)."""
    from archlab.claims.plan import compose_typed, config_context

    seen, out = set(), []
    with config_context():
        for arm, overrides in claim.jobs(False):
            if arm not in seen:
                seen.add(arm)
                out.append(compose_typed(overrides).data)
    return out


def preflight(claim: Claim, args, records_root: Path, lay: dict) -> str | None:
    """Everything that must hold before the claim trains; returns the corpus pin (None: smoke)."""
    validate_jobs(claim, args.smoke)
    if args.smoke:
        return None
    from archlab.runs.provenance import collect

    pinned = P.check(claim.id, _data_cfgs(claim), P.read_pin())
    R.refuse_incompatible(claim, records_root, collect(lay["threads"], pinned))
    return pinned


def _on_done(claim, records_root, smoke, extra, overrides, summary, run_dir) -> None:
    prereg = R.read_prereg_hash(run_dir.parent)
    R.record_run(
        claim,
        records_root,
        overrides,
        summary,
        run_dir,
        smoke,
        {**extra, "preregistration": prereg},
    )


def recording_runner(records_root: Path, smoke: bool, lay: dict, pinned: str | None):
    """The runner's ``run_jobs`` that records every finished run (and the protocol files)."""
    extra = {"corpus_pin": pinned, "layout": dict(lay)}

    def run(claim, runs_dir, jobs, threads, counts, log):
        dest = R.claim_records_dir(records_root, claim)
        R.copy_protocol_files(sweep_dir(runs_dir, claim), dest)  # pre-registration, LR pick
        on_done = functools.partial(_on_done, claim, records_root, smoke, extra)
        R.record_finished(claim, runs_dir, records_root, jobs, smoke, extra)  # trained earlier
        return L.run_parallel(claim, runs_dir, jobs, threads, counts, log, on_done, lay["jobs"])

    return run


def report(claim: Claim, records_root: Path, results_dir: Path, smoke: bool, alpha: float):
    """The report from the records alone: the runner reads them through a temporary sweep that
    links to the claim's records folder (paths in the report resolve to the records)."""
    with tempfile.TemporaryDirectory(prefix="archlab-report-") as tmp:
        link = sweep_dir(Path(tmp), claim)
        link.parent.mkdir(parents=True)
        link.symlink_to(
            R.claim_records_dir(records_root, claim).resolve(), target_is_directory=True
        )
        return write_report(claim, Path(tmp), results_dir, smoke, None, None, alpha)


def reproduce_one(claim: Claim, args, roots, lay: dict, pinned: str | None) -> None:
    records_root, results_dir, scratch = roots
    if not args.report_only:
        restored = R.restore(records_root, claim, scratch)
        print(
            f"archlab reproduce: {claim.id}: {restored} recorded run(s) restored; training in "
            f"{sweep_dir(scratch, claim)}, records → {R.claim_records_dir(records_root, claim)}",
            flush=True,
        )
        start = time.time()
        runner = recording_runner(records_root, args.smoke, lay, pinned)
        counts = run_claim(
            claim,
            scratch,
            args.smoke,
            lay["threads"],
            log=lambda m: print(m, flush=True),
            run=runner,
        )
        print(
            f"archlab reproduce: {claim.id}: trained {counts['ran']}, skipped "
            f"{counts['skipped']}, failed {counts['failed']} in {time.time() - start:.0f} s",
            flush=True,
        )
    if not R.record_dirs(records_root, claim):
        print(f"archlab reproduce: {claim.id}: no records: no report written", flush=True)
        return
    s = report(claim, records_root, results_dir, args.smoke, args.alpha)
    print(
        f"archlab reproduce: {claim.id}: {s['verdict']} → {results_dir / (claim.id + '.md')}",
        flush=True,
    )


def _special(args, claims, roots, lay) -> int | None:
    """--pin-corpus, --calibrate, --plan: no training of claims."""
    campaign = load_campaign()
    if args.pin_corpus:
        return pin_corpus(claims or load_all(), roots[0], campaign.get("rung") or [])
    if args.calibrate:
        result = L.calibrate(campaign.get("rung") or [], args.calibrate_steps)
        best = L.fastest(result)
        print(
            f"fastest layout here: {best} (load average {result['load_average']:.1f}: "
            f"{'quiet' if result['quiet'] else 'NOT quiet, do not trust this measurement'})"
        )
        return 0
    if args.plan:
        from archlab.claims.plan import print_plan

        print_plan(claims, roots[0], campaign, lay, L.read_calibration())
        return 0
    return None


def pin_corpus(claims: list[Claim], records_root: Path, rung: list[str]) -> int:
    """Pin the rung's corpus (refused while records exist under an existing pin)."""
    from archlab.claims.plan import compose_typed, config_context

    recorded = [c.id for c in claims if R.record_dirs(records_root, c)]
    if recorded and P.read_pin():
        raise ClaimError(
            f"records exist for {', '.join(recorded)}: the pin cannot change under them"
        )
    with config_context():
        data = compose_typed(rung).data
    pin = P.take_pin(data)
    print(
        f"pinned corpus {pin['fingerprint']} (data={pin['data']}, Python {pin['python']}) → "
        f"{os.path.relpath(P.PIN_FILE, REPO)}"
    )
    return 0


def _claims(args) -> list[Claim]:
    if not args.claim:
        if args.calibrate or args.pin_corpus:
            return []
        raise ClaimError("give a claim id or all (archlab reproduce --list shows them)")
    return load_all() if "all" in args.claim else [get(c) for c in args.claim]


def _prepare(args):
    claims = _claims(args)
    roots, lay = _roots(args), _layout(args, load_campaign())
    special = _special(args, claims, roots, lay)
    if special is not None:
        return special, None
    runnable = []
    for c in claims:
        missing = c.missing_requirements()
        if missing:
            print(
                f"archlab reproduce: skipping {c.id}: missing {', '.join(missing)}", file=sys.stderr
            )
            continue
        pinned = None if args.report_only else preflight(c, args, roots[0], lay)
        runnable.append((c, pinned))
    return None, (runnable, roots, lay)


def main(argv: list[str] | None = None) -> int:
    try:
        args = parser().parse_args(argv)
        if args.list:
            for c in load_all():
                print(f"{c.id:24s} {c.claim}")
            return 0
        code, prepared = _prepare(args)
        if code is not None:
            return code
        os.environ.setdefault("WANDB_MODE", "offline")
        runnable, roots, lay = prepared
        for c, pinned in runnable:
            reproduce_one(c, args, roots, lay, pinned)
        _summary_table(args, roots[1])
    except ClaimError as err:
        print(f"archlab reproduce: error: {err}", file=sys.stderr)
        return 2
    except SystemExit as exit_:  # --help
        return int(exit_.code or 0)
    return 0


def _summary_table(args, results_dir: Path) -> None:
    if results_dir == RESULTS_DIR.resolve() and not args.smoke:
        write_summary_table(load_all(), results_dir, SUMMARY_MD)
    elif args.smoke or args.out:
        write_summary_table(load_all(), results_dir, results_dir / "README.md")
