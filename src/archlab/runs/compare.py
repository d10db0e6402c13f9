"""``archlab compare``: seed-aware comparison of run records (local dirs or a W&B group).

Pipeline: find runs -> group into arms (``arms.py``) -> per-arm final val loss statistics and
tests vs the baseline (``stats.py``) -> seed-aligned curves (``curves.py``) -> report.md +
PNGs (``report.py``), report.html (``html.py``) and compare.json.

Rules:
* ``failed`` runs are listed with their error and excluded everywhere.
* ``diverged`` runs are counted per arm and never averaged into a loss; an arm with a
  diverged seed gets the verdict ``unstable``.
* With an LR sweep (``optim.lr`` varies), each arm is compared at its own best LR (lowest
  seed-mean final val loss, diverged seeds counting as loss at init), and ``unstable``
  refers to divergence at that LR; divergence over the whole grid shows in the diverged
  count and the LR sensitivity.

For programmatic use (the claims runner): ``compare_runs(dirs, baseline=..., alpha=...)``
returns the same dict that is written to compare.json.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from archlab.errors import OneLineParser
from archlab.runs.arms import (
    LR_KEY,
    Arm,
    ArmError,
    flatten,
    format_value,
    group_arms,
    pick_baseline,
)
from archlab.runs.comparable import IncomparableError, check_comparable, finished, unfinished
from archlab.runs.load import RunRecord, find_runs
from archlab.runs.report import markdown_table, table_rows, write_outputs
from archlab.runs.values import json_ready
from archlab.runs.wandb_source import WandbSourceError, load_wandb_runs

X_CHOICES = ("step", "tokens", "flops", "time", "all")
# Config keys shown in the setup line when they are the same for every run.
SETUP_KEYS = (
    "model.n_layers",
    "model.d_model",
    "model.n_heads",
    "train.batch_size",
    "train.max_steps",
    "optim.lr",
    "optim.weight_decay",
    "optim.warmup_steps",
    "data.name",
)


class CompareError(Exception):
    """A user-facing error: printed as one line, exit code 2."""


@dataclass
class Analysis:
    """The comparison result (JSON-ready ``result``) plus the arms it was computed from."""

    result: dict[str, Any]
    arms: list[Arm]
    compared_runs: list[list[RunRecord]]  # per arm: the runs behind its loss statistics
    warnings: list[str] = field(default_factory=list)


def _lr(record: RunRecord) -> float | None:
    value = flatten(record.config).get(LR_KEY)
    return float(value) if isinstance(value, (int, float)) else None


def _seed_values(runs: list[RunRecord], warnings: list[str], label: str) -> dict[Any, float]:
    """seed -> final val loss of usable runs; duplicate seeds are averaged (with a warning)."""
    by_seed: dict[Any, list[float]] = {}
    for run in runs:
        loss = run.final_val_loss()
        if loss is None:
            warnings.append(f"{run.source}: no finite final val loss, excluded")
            continue
        by_seed.setdefault(run.seed, []).append(loss)
    for seed, vals in by_seed.items():
        if len(vals) > 1:
            warnings.append(f"arm {label}: {len(vals)} runs with seed {seed}, averaged")
    return {seed: sum(v) / len(v) for seed, v in by_seed.items()}


def _mean_init_loss(runs: list[RunRecord]) -> float | None:
    inits = [x for x in (r.loss_at_init() for r in runs) if x is not None]
    return sum(inits) / len(inits) if inits else None


def _lr_grid(arm_runs: list[RunRecord], init: float | None) -> list[dict[str, Any]]:
    """Per LR: seeds' final losses (None = diverged), mean of the non-diverged, counts."""
    by_lr: dict[float, list[RunRecord]] = {}
    for run in arm_runs:
        by_lr.setdefault(_lr(run), []).append(run)
    grid = []
    for lr in sorted(by_lr, key=lambda v: (v is None, v)):
        runs = by_lr[lr]
        finals = [None if r.status == "diverged" else r.final_val_loss() for r in runs]
        finals = [f for r, f in zip(runs, finals) if f is not None or r.status == "diverged"]
        ok = [f for f in finals if f is not None]
        with_init = [init if f is None else f for f in finals] if init is not None else ok
        grid.append(
            {
                "lr": lr,
                "n": len(finals),
                "n_diverged": sum(f is None for f in finals),
                "mean": sum(ok) / len(ok) if ok else None,
                "mean_diverged_as_init": sum(with_init) / len(with_init) if with_init else None,
                "finals": finals,
                "runs": runs,
            }
        )
    return grid


def analyze(records: list[RunRecord], baseline: str | None = None, alpha: float = 0.05) -> Analysis:
    """Group ``records`` into arms and compute every statistic of the report."""
    from archlab.runs import stats  # scipy (~0.3 s): only when there are arms to test

    if not records:
        raise CompareError("no runs found")
    if not 0 < alpha < 1:
        raise CompareError(f"--alpha must be in (0, 1), got {alpha}")
    warnings: list[str] = []
    try:
        check_comparable(records)
    except IncomparableError as err:
        raise CompareError(str(err)) from None
    arms, arm_keys, lr_sweep = group_arms(records)
    try:
        base_idx = pick_baseline(arms, arm_keys, baseline)
    except ArmError as err:
        raise CompareError(str(err)) from None
    arms.insert(0, arms.pop(base_idx))  # baseline first in every table and figure

    rows, compared = [], []
    for arm in arms:
        live = [r for r in arm.runs if finished(r)]  # unfinished runs are never averaged in
        waiting = [r for r in arm.runs if unfinished(r)]
        if waiting:
            warnings.append(
                f"{arm.label}: {len(waiting)} unfinished run(s) not averaged in ("
                + ", ".join(f"{r.source}: {r.status}" for r in waiting[:3])
                + ")"
            )
        init = _mean_init_loss(live)
        row: dict[str, Any] = {
            "label": arm.label,
            "values": {k: format_value(v) for k, v in arm.values.items()},
            "n_runs": len(arm.runs),
            "n_diverged": sum(r.status == "diverged" for r in arm.runs),
            "n_failed": sum(r.status == "failed" for r in arm.runs),
            "n_unfinished": len(waiting),
            "loss_at_init": init,
        }
        runs_at = live
        if lr_sweep:
            grid = _lr_grid(live, init)
            finals = {g["lr"]: g["finals"] for g in grid if g["lr"] is not None}
            row["lr_sensitivity"] = stats.lr_sensitivity(finals, init)
            scored = [g for g in grid if g["mean"] is not None]
            best = min(scored, key=lambda g: g["mean_diverged_as_init"]) if scored else None
            row["lr"] = best["lr"] if best else None
            row["lr_grid"] = [{k: v for k, v in g.items() if k != "runs"} for g in grid]
            runs_at = best["runs"] if best else []
        diverged_here = [r for r in runs_at if r.status == "diverged"]
        usable = [r for r in runs_at if r.status != "diverged"]
        row["n_diverged_compared"] = len(diverged_here)
        row["seed_losses"] = _seed_values(usable, warnings, arm.label)
        params = Counter(
            r.summary.get("params") for r in live if r.summary.get("params") is not None
        )
        row["params"] = params.most_common(1)[0][0] if params else None
        tps = [r.summary.get("tokens_per_sec") for r in live]
        tps = [float(t) for t in tps if isinstance(t, (int, float)) and math.isfinite(t)]
        row["tokens_per_sec"] = sum(tps) / len(tps) if tps else None
        rows.append(row)
        compared.append(usable)

    base_losses = dict(rows[0]["seed_losses"])
    for i, row in enumerate(rows):
        ci = stats.mean_ci(list(row["seed_losses"].values()), alpha)
        row["final_val_loss"] = asdict(ci)
        if i == 0:
            row["diff"] = None
            row["test_verdict"] = "baseline"
            row["verdict"] = "baseline" + (", unstable" if row["n_diverged_compared"] else "")
        else:
            diff = stats.compare_to_baseline(row["seed_losses"], base_losses, alpha)
            row["diff"] = asdict(diff)
            row["verdict"], row["test_verdict"] = stats.verdict(
                diff, alpha, row["n_diverged_compared"]
            )
        row["seeds"] = sorted(row["seed_losses"], key=str)
        row["seed_losses"] = [{"seed": s, "val_loss": v} for s, v in row["seed_losses"].items()]
    noise = rows[0]["final_val_loss"]["std"]

    flats = [flatten(r.config) for r in records]
    common = {
        k: format_value(flats[0][k])
        for k in SETUP_KEYS
        if k in flats[0] and len({format_value(f.get(k)) for f in flats}) == 1
    }
    result = {
        "setup": {
            "n_runs": len(records),
            "sources": sorted({str(Path(r.source).parent) for r in records}),
            "arm_keys": arm_keys,
            "lr_sweep": lr_sweep,
            "lr_key": LR_KEY if lr_sweep else None,
            "alpha": alpha,
            "ci_level": 1 - alpha,
            "metric": "final val loss (lower is better)",
            "seeds": sorted({r.seed for r in records}, key=str),
            "common": common,
        },
        "baseline": rows[0]["label"],
        "seed_noise": noise,
        "arms": rows,
        "failed_runs": [
            {"source": r.source, "arm": a.label, "seed": r.seed, "error": r.summary.get("error")}
            for a in arms
            for r in a.runs
            if r.status == "failed"
        ],
        "unfinished_runs": [
            {"source": r.source, "arm": a.label, "seed": r.seed, "status": r.status}
            for a in arms
            for r in a.runs
            if unfinished(r)
        ],
        "diverged_runs": [
            {
                "source": r.source,
                "arm": a.label,
                "seed": r.seed,
                "lr": _lr(r),
                "diverged_at_step": r.summary.get("diverged_at_step"),
            }
            for a in arms
            for r in a.runs
            if r.status == "diverged"
        ],
        "warnings": warnings,
    }
    return Analysis(result=json_ready(result), arms=arms, compared_runs=compared, warnings=warnings)


def load_records(
    dirs: list[str] | None = None, wandb_path: str | None = None, warn=None
) -> list[RunRecord]:
    """Runs from local run/sweep dirs, or from a W&B ``entity/project/group``."""
    warn = warn or (lambda msg: print(msg, file=sys.stderr))
    if wandb_path:
        try:
            return load_wandb_runs(wandb_path)
        except WandbSourceError as err:
            raise CompareError(str(err)) from None
    return find_runs(dirs or [], warn=warn)


def compare_runs(
    dirs: list[str], baseline: str | None = None, alpha: float = 0.05
) -> dict[str, Any]:
    """The compare.json dict for the runs under ``dirs`` (no files written)."""
    return analyze(load_records(dirs), baseline=baseline, alpha=alpha).result


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        error_type=CompareError, prog="archlab compare", description=__doc__.split("\n\n")[0]
    )
    p.add_argument(
        "dirs", nargs="*", help="run directories or sweep directories (searched recursively)"
    )
    p.add_argument(
        "--wandb", metavar="ENTITY/PROJECT/GROUP", help="read the runs of a W&B group instead"
    )
    p.add_argument(
        "--baseline", metavar="KEY=VALUE", help="baseline arm, e.g. mlp=swiglu (default: first arm)"
    )
    p.add_argument("--alpha", type=float, default=0.05, help="significance level (default 0.05)")
    p.add_argument("--x", default="all", help="x axis of the curves: step|tokens|flops|time|all")
    p.add_argument("--out", metavar="DIR", help="output dir (default: <first dir>/compare)")
    return p


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit code (2 for user errors, printed as one line)."""
    try:
        args = build_parser().parse_args(argv)
        if args.x not in X_CHOICES:
            raise CompareError(f"--x must be one of {'|'.join(X_CHOICES)}, got {args.x!r}")
        if not args.dirs and not args.wandb:
            raise CompareError("give run/sweep directories or --wandb ENTITY/PROJECT/GROUP")
        if args.out:
            out = Path(args.out)
        elif args.wandb:
            out = Path("compare-" + args.wandb.replace("/", "-"))
        else:
            out = Path(args.dirs[0]) / "compare"
        analysis = analyze(load_records(args.dirs, args.wandb), args.baseline, args.alpha)

        x_axes = ["step", "tokens", "flops", "time"] if args.x == "all" else [args.x]
        written = write_outputs(analysis, out, x_axes)
    except CompareError as err:
        print(f"archlab compare: error: {err}", file=sys.stderr)
        return 2
    except SystemExit as exit_:  # --help
        return int(exit_.code or 0)
    for warning in analysis.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(markdown_table(*table_rows(analysis.result)))
    print(f"\nwrote {', '.join(str(p) for p in written)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
