"""``archlab reproduce``: the campaign around the claims runner (issue #12).

``archlab reproduce <id>|all`` (default roots: ``experiments/``, the claims dir's parent):

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

from archlab.claims import bench as B
from archlab.claims import layout as L
from archlab.claims import pin as P
from archlab.claims import records as R
from archlab.claims.minimums import campaign_path, load_campaign
from archlab.claims.registry import Claim, ClaimError, find_claims_dir, get, load_all
from archlab.claims.runner import (
    build_parser,
    output_dirs,
    run_claim,
    runnable_claims,
    sweep_dir,
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
        "--pin-corpus",
        action="store_true",
        help="record the corpus pin (no records yet); with claim ids: pin their other sources",
    )
    p.add_argument("--jobs", type=int, default=None, help="parallel jobs (default: campaign.yaml)")
    p.add_argument("--scratch", metavar="DIR", help="where runs train (default: outside git)")
    return p


def argparse_hide():
    import argparse

    return argparse.SUPPRESS


def _roots(args, experiments: Path) -> tuple[Path, Path, Path]:
    """(records root, results dir, scratch root): the runner's runs dir holds the records."""
    records, results = output_dirs(args, experiments)
    if args.scratch:
        scratch = Path(args.scratch)
    elif args.out:
        scratch = Path(args.out) / "scratch"
    elif args.smoke:
        scratch = Path(tempfile.gettempdir()) / "archlab-claims-smoke" / "scratch"
    else:
        scratch = SCRATCH
    return records, results, scratch.resolve()


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
    from archlab.compose import Composer

    seen, out = set(), []
    with Composer() as composer:
        for arm, overrides in claim.jobs(False):
            if arm not in seen:
                seen.add(arm)
                out.append(composer.compose(overrides, check=False).data)
    return out


def preflight(claim: Claim, records_root: Path, lay: dict, pin_path: Path) -> str:
    """What must hold before a (non-smoke) claim trains, beyond the runner's job validation:
    the pinned corpus and records this machine may add to; returns the corpus pin."""
    from archlab.runs.provenance import collect

    pinned = P.check(claim.id, _data_cfgs(claim), P.read_pin(pin_path), pin_path)
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
        prereg = {**extra, "preregistration": R.read_prereg_hash(sweep_dir(runs_dir, claim))}
        shared = _share(claim, records_root, jobs, smoke, prereg)
        if shared:  # identical runs of other claims: recorded here, restored, not trained
            log(f"[{claim.id}] shared from other claims: {', '.join(shared)}")
            R.restore(records_root, claim, runs_dir)
        return L.run_parallel(claim, runs_dir, jobs, threads, counts, log, on_done, lay["jobs"])

    return run


def _share(claim: Claim, records_root: Path, jobs, smoke: bool, extra: dict) -> list[str]:
    from archlab.compose import Composer

    if not R.record_identities(records_root, claim):
        return []
    with Composer() as composer:
        identity = functools.partial(R.composed_identity, composer)
        return R.share_records(claim, records_root, jobs, smoke, extra, identity)


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
        dest = R.claim_records_dir(records_root, claim)  # speed facts, measured once
        B.measure(claim, dest, args.smoke, lay["threads"], log=lambda m: print(m, flush=True))
    if not R.record_dirs(records_root, claim):
        print(f"archlab reproduce: {claim.id}: no records: no report written", flush=True)
        return
    s = report(claim, records_root, results_dir, args.smoke, args.alpha)
    print(
        f"archlab reproduce: {claim.id}: {s['verdict']} → {results_dir / (claim.id + '.md')}",
        flush=True,
    )


def _special(args, claims, roots, lay, experiments: Path) -> int | None:
    """--pin-corpus, --calibrate, --plan: no training of claims."""
    campaign = load_campaign(campaign_path(experiments))
    if args.pin_corpus and args.claim and "all" not in args.claim:
        return pin_sources(claims, P.pin_file(experiments))
    if args.pin_corpus:
        return pin_corpus(claims, roots[0], campaign.get("rung") or [], P.pin_file(experiments))
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


def pin_corpus(claims: list[Claim], records_root: Path, rung: list[str], path: Path) -> int:
    """Pin the rung's corpus (refused while records exist under an existing pin)."""
    from archlab.compose import Composer

    recorded = [c.id for c in claims if R.record_dirs(records_root, c)]
    if recorded and P.read_pin(path):
        raise ClaimError(
            f"records exist for {', '.join(recorded)}: the pin cannot change under them"
        )
    with Composer() as composer:
        data = composer.compose(rung, check=False).data
    pin = P.take_pin(data, path)
    print(
        f"pinned corpus {pin['fingerprint']} (data={pin['data']}, Python {pin['python']}) → "
        f"{os.path.relpath(path)}"
    )
    return 0


def pin_sources(claims: list[Claim], path: Path) -> int:
    """Pin the data sources of ``claims`` that the pin lacks (existing entries unchanged)."""
    for claim in claims:
        for cfg in _data_cfgs(claim):
            entry = P.add_source(cfg, path)
            what = f"data={cfg.source}" + (f" data.path={cfg.path}" if cfg.path else "")
            if entry is None:
                print(f"{claim.id}: {what} is pinned already")
            else:
                print(f"{claim.id}: pinned {what} {entry['fingerprint']} → {os.path.relpath(path)}")
    return 0


def _claims(args, claims_dir: Path) -> list[Claim]:
    if not args.claim:
        if args.calibrate or args.pin_corpus:
            return load_all(claims_dir) if args.pin_corpus else []
        raise ClaimError("give a claim id or all (archlab reproduce --list shows them)")
    if "all" in args.claim:
        return load_all(claims_dir)
    return [get(c, claims_dir) for c in args.claim]


def _prepare(args, claims_dir: Path):
    """(exit code, None) for --pin-corpus/--calibrate/--plan; else (None, the claims to run
    with their corpus pins, roots, layout), every claim checked before any trains."""
    experiments = claims_dir.resolve().parent  # results/, runs/, README.md beside claims/
    claims = _claims(args, claims_dir)
    roots = _roots(args, experiments)
    lay = _layout(args, load_campaign(campaign_path(experiments)))
    special = _special(args, claims, roots, lay, experiments)
    if special is not None:
        return special, None
    runnable = []
    for c in runnable_claims(claims, args):  # requirements; jobs validated (not --report-only)
        train = not (args.report_only or args.smoke)
        pinned = preflight(c, roots[0], lay, P.pin_file(experiments)) if train else None
        runnable.append((c, pinned))
    return None, (runnable, roots, lay)


def main(argv: list[str] | None = None) -> int:
    try:
        args = parser().parse_args(argv)
        claims_dir = Path(args.claims_dir) if args.claims_dir else find_claims_dir()
        if args.list:
            for c in load_all(claims_dir):
                print(f"{c.id:24s} {c.claim}")
            return 0
        code, prepared = _prepare(args, claims_dir)
        if code is not None:
            return code
        os.environ.setdefault("WANDB_MODE", "offline")
        runnable, roots, lay = prepared
        for c, pinned in runnable:
            reproduce_one(c, args, roots, lay, pinned)
        _summary_table(args, roots[1], claims_dir)
    except ClaimError as err:
        print(f"archlab reproduce: error: {err}", file=sys.stderr)
        return 2
    except SystemExit as exit_:  # --help
        return int(exit_.code or 0)
    return 0


def _summary_table(args, results_dir: Path, claims_dir: Path) -> None:
    experiments = claims_dir.resolve().parent
    if results_dir == (experiments / "results").resolve() and not args.smoke:
        write_summary_table(load_all(claims_dir), results_dir, experiments / "README.md")
    elif args.smoke or args.out:
        write_summary_table(load_all(claims_dir), results_dir, results_dir / "README.md")
