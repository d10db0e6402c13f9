"""``archlab compare``: seed-aware comparison of run records (local dirs or a W&B group).

Pipeline: find runs -> group into arms (``arms.py``) -> per-arm final val loss statistics and
tests vs the baseline (``stats.py``) -> seed-aligned curves (``curves.py``) -> report.md +
PNGs (``report.py``), report.html (``html.py``) and compare.json.

Rules:
* ``failed`` runs are listed with their error and excluded everywhere.
* ``diverged`` runs count as their loss at initialisation (never dropped: survivorship would
  flatter an arm at an aggressive LR); an arm with a diverged seed is also marked ``unstable``.
* With an LR sweep (``optim.lr`` varies) each arm is compared at its LR *tuned out of sample*
  (``tuning.py``): picked on the scout seeds (default: the first seed) by a quadratic fit of
  loss vs log LR, compared on the confirm seeds (default: the others). A pick on the grid's
  edge is a warning.
* With more than two arms, the p-values against the baseline are Holm-adjusted.
* Next to each Δ: seed noise (std over seeds) and evaluation noise (the runs' standard error of
  the val loss over validation windows); the shared budget is stated.
* Runs that differ in provenance (commit, numerics version, torch, CPU, corpus, ...) are
  pooled with a warning.
* Arms with different tokenizers (or ``--bpb``) are compared in bits per byte: each run's
  losses × its validation split's tokens per byte / ln 2 (``comparable.py``), with a warning;
  other data or validation sets are refused in one line.

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
from archlab.runs.comparable import (
    IncomparableError,
    check_comparable,
    finished,
    in_bits_per_byte,
    tokenizers_differ,
    unfinished,
)
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


def scored_loss(run: RunRecord) -> float | None:
    """Final val loss; a diverged run counts as its loss at init (never dropped)."""
    return run.loss_at_init() if run.status == "diverged" else run.final_val_loss()


def _seed_values(runs: list[RunRecord], warnings: list[str], label: str) -> dict[Any, float]:
    """seed -> scored loss; duplicate seeds are averaged (with a warning)."""
    by_seed: dict[Any, list[float]] = {}
    for run in runs:
        loss = scored_loss(run)
        if loss is None:
            warnings.append(f"{run.source}: no finite final val loss, excluded")
            continue
        by_seed.setdefault(run.seed, []).append(loss)
    for seed, vals in by_seed.items():
        if len(vals) > 1:
            warnings.append(f"arm {label}: {len(vals)} runs with seed {seed}, averaged")
    return {seed: sum(v) / len(v) for seed, v in by_seed.items()}


def _mean(values) -> float | None:
    vals = [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    return sum(vals) / len(vals) if vals else None


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
                "mean": _mean(ok),
                "mean_diverged_as_init": _mean(with_init),
                "finals": finals,
            }
        )
    return grid


@dataclass
class Protocol:
    """How arms are compared: at one config, or each at its LR tuned on scout seeds."""

    tune: bool = False
    scout: list | None = None
    confirm: list | None = None
    in_sample: bool = False


def make_protocol(
    records: list[RunRecord], lr_sweep: bool, tune: str | None, scout, confirm
) -> Protocol:
    if tune not in (None, "lr"):
        raise CompareError(f"--tune must be lr, got {tune!r}")
    if not lr_sweep:
        if tune or scout or confirm:
            raise CompareError("--tune lr needs runs that vary optim.lr (an LR sweep)")
        return Protocol()
    seeds = sorted({r.seed for r in records}, key=str)
    scout = list(scout) if scout else seeds[:1]
    confirm = list(confirm) if confirm else [s for s in seeds if s not in scout]
    if set(scout) & set(confirm):
        raise CompareError(f"scout seeds {scout} and confirm seeds {confirm} must not overlap")
    if not confirm:  # one seed: nothing left to confirm on
        return Protocol(True, scout, scout, in_sample=True)
    return Protocol(True, scout, confirm)


def _tuned(row: dict, live: list[RunRecord], proto: Protocol) -> list[RunRecord]:
    """Pick the arm's LR on the scout seeds; returns the confirm runs at that LR."""
    from archlab.runs import stats
    from archlab.runs.tuning import pick_lr

    init = row["loss_at_init"]
    grid = _lr_grid(live, init)
    finals = {g["lr"]: g["finals"] for g in grid if g["lr"] is not None}
    row["lr_sensitivity"] = stats.lr_sensitivity(finals, init)
    row["lr_grid"] = grid
    scouts = [r for r in live if r.seed in proto.scout]
    pick = pick_lr([(_lr(r), scored_loss(r)) for r in scouts], ceiling=init)
    row["lr"] = pick.lr
    row["lr_pick"] = {k: getattr(pick, k) for k in ("method", "on_edge", "curve", "fit")}
    row["lr_pick"]["warning"] = pick.warning
    return [r for r in live if _lr(r) == pick.lr and r.seed in proto.confirm]


def _arm_row(arm: Arm, proto: Protocol, warnings: list[str]) -> tuple[dict, list[RunRecord]]:
    live = [r for r in arm.runs if finished(r)]  # unfinished runs are never averaged in
    waiting = [r for r in arm.runs if unfinished(r)]
    if waiting:
        warnings.append(
            f"{arm.label}: {len(waiting)} unfinished run(s) not averaged in ("
            + ", ".join(f"{r.source}: {r.status}" for r in waiting[:3])
            + ")"
        )
    row: dict[str, Any] = {
        "label": arm.label,
        "values": {k: format_value(v) for k, v in arm.values.items()},
        "n_runs": len(arm.runs),
        "n_diverged": sum(r.status == "diverged" for r in arm.runs),
        "n_failed": sum(r.status == "failed" for r in arm.runs),
        "n_unfinished": len(waiting),
        "loss_at_init": _mean(r.loss_at_init() for r in live),
    }
    compared = _tuned(row, live, proto) if proto.tune else live
    if not proto.tune:  # the arm's own LR when it ran at one (arms at per-arm LRs)
        lrs = {_lr(r) for r in live}
        row["lr"] = lrs.pop() if len(lrs) == 1 else None
    if proto.tune and row["lr_pick"]["warning"]:
        warnings.append(f"arm {arm.label}: {row['lr_pick']['warning']}")
    row["n_diverged_compared"] = sum(r.status == "diverged" for r in compared)
    row["seed_losses"] = _seed_values(compared, warnings, arm.label)
    row["eval_noise"] = _mean(r.summary.get("val_loss_se") for r in compared)
    params = Counter(r.summary.get("params") for r in live if r.summary.get("params") is not None)
    row["params"] = params.most_common(1)[0][0] if params else None
    row["tokens_per_sec"] = _mean(r.summary.get("tokens_per_sec") for r in live)
    row["flops_per_token"] = _mean(r.summary.get("flops_per_token") for r in live)
    return row, compared


def _add_tests(rows: list[dict], alpha: float, bases: list[int]) -> None:
    """CI per arm, Δ vs its baseline (row ``bases[i]``: row 0, or on a ladder the baseline arm
    at the same rung); Holm across the arms compared when there are more than one."""
    from archlab.runs import stats
    from archlab.runs.inference import holm, noise_summary

    tested = [i for i, b in enumerate(bases) if b != i]
    for i, row in enumerate(rows):
        row["final_val_loss"] = asdict(stats.mean_ci(list(row["seed_losses"].values()), alpha))
        row["seed_noise"] = noise_summary(list(row["seed_losses"].values()))
        row["diff"] = None
        if i in tested:
            base = rows[bases[i]]
            row["baseline"] = base["label"]
            diff = stats.compare_to_baseline(row["seed_losses"], dict(base["seed_losses"]), alpha)
            row["diff"] = asdict(diff)
    adjusted = holm([rows[i]["diff"]["p_value"] for i in tested]) if len(tested) > 1 else None
    for i, row in enumerate(rows):
        if i not in tested:
            row["test_verdict"] = "baseline"
            row["verdict"] = "baseline" + (", unstable" if row["n_diverged_compared"] else "")
        else:
            diff = stats.Diff(**row["diff"])
            if adjusted is not None:
                row["diff"]["p_holm"] = diff.p_value = adjusted[tested.index(i)]
            row["verdict"], row["test_verdict"] = stats.verdict(
                diff, alpha, row["n_diverged_compared"]
            )
    for row in rows:
        row["seeds"] = sorted(row["seed_losses"], key=str)
        row["seed_losses"] = [{"seed": s, "val_loss": v} for s, v in row["seed_losses"].items()]


def _windows(runs: list[RunRecord]) -> dict[Any, list[float]]:
    return {
        r.seed: r.summary["val_window_losses"]
        for r in runs
        if r.status == "completed" and isinstance(r.summary.get("val_window_losses"), list)
    }


def _eval_noise_of_diffs(rows: list[dict], compared, bases: list[int]) -> None:
    """Next to each Δ: the evaluation noise of that difference (same windows, paired)."""
    from archlab.runs.stats import paired_window_se

    for i, (row, runs) in enumerate(zip(rows, compared)):
        if bases[i] != i:
            row["eval_noise_diff"] = paired_window_se(_windows(runs), _windows(compared[bases[i]]))


def _setup(records, arm_keys, lr_sweep, alpha, proto: Protocol, unit: str) -> dict[str, Any]:
    flats = [flatten(r.config) for r in records]
    common = {
        k: format_value(flats[0][k])
        for k in SETUP_KEYS
        # a budget run's max_steps is null (derived at the start): the budget line says it
        if flats[0].get(k) is not None and len({format_value(f.get(k)) for f in flats}) == 1
    }
    return {
        "n_runs": len(records),
        "sources": sorted({str(Path(r.source).parent) for r in records}),
        "arm_keys": arm_keys,
        "lr_sweep": lr_sweep,
        "lr_key": LR_KEY if lr_sweep else None,
        # no sweep, but the arms ran at LRs of their own (e.g. each at its tuned pick)
        "lr_by_arm": not lr_sweep and len({format_value(f.get(LR_KEY)) for f in flats}) > 1,
        "protocol": asdict(proto),
        "alpha": alpha,
        "ci_level": 1 - alpha,
        "metric": f"final val loss in {unit} (lower is better; diverged runs count as their "
        "loss at init)",
        "unit": unit,
        "seeds": sorted({r.seed for r in records}, key=str),
        "common": common,
    }


def _run_lists(arms: list[Arm]) -> dict[str, list[dict]]:
    failed = [
        {"source": r.source, "arm": a.label, "seed": r.seed, "error": r.summary.get("error")}
        for a in arms
        for r in a.runs
        if r.status == "failed"
    ]
    diverged = [
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
    ]
    unfinished_runs = [
        {"source": r.source, "arm": a.label, "seed": r.seed, "status": r.status}
        for a in arms
        for r in a.runs
        if unfinished(r)
    ]
    return {"failed_runs": failed, "unfinished_runs": unfinished_runs, "diverged_runs": diverged}


def in_unit(records: list[RunRecord], bpb: bool = False) -> tuple[list[RunRecord], str]:
    """The records in the unit they are compared in: nats per token, or bits per byte when
    asked (``bpb``) or when the tokenizers differ. CompareError if they cannot be compared."""
    across = bpb or tokenizers_differ(records)
    try:
        check_comparable(records, across_tokenizers=across)
        return (in_bits_per_byte(records), BPB) if across else (records, NATS)
    except IncomparableError as err:
        raise CompareError(str(err)) from None


NATS, BPB = "nats/token", "bits/byte"


def _grouped(records: list[RunRecord], baseline: str | None):
    """Arms (baseline first), the keys that define them, and whether the LR is swept."""
    arms, arm_keys, lr_sweep = group_arms(records)
    try:
        arms.insert(0, arms.pop(pick_baseline(arms, arm_keys, baseline)))
    except ArmError as err:
        raise CompareError(str(err)) from None
    return arms, arm_keys, lr_sweep


def analyze(
    records: list[RunRecord],
    baseline: str | None = None,
    alpha: float = 0.05,
    tune: str | None = None,
    scout: list | None = None,
    confirm: list | None = None,
    bpb: bool = False,
) -> Analysis:
    """Group ``records`` into arms and compute every statistic of the report (in bits per
    byte with ``bpb`` or when the arms' tokenizers differ)."""
    from archlab.runs.budget_check import budget_summary
    from archlab.runs.ladder import analyze_ladder, rung_baselines
    from archlab.runs.provenance import pooling_differences

    if not records:
        raise CompareError("no runs found")
    if not 0 < alpha < 1:
        raise CompareError(f"--alpha must be in (0, 1), got {alpha}")
    records, unit = in_unit(records, bpb)
    arms, arm_keys, lr_sweep = _grouped(records, baseline)
    warnings: list[str] = []
    if unit == BPB:
        warnings.append(
            "losses in bits per byte ("
            + ("--bpb" if bpb else "the arms use different tokenizers")
            + "): nats/token × the validation split's tokens per byte / ln 2, the same "
            "validation text for every run"
        )
    proto = make_protocol(records, lr_sweep, tune, scout, confirm)
    if proto.in_sample:
        warnings.append("one seed only: the LR is picked and compared on the same seed")
    rows, compared = zip(*(_arm_row(arm, proto, warnings) for arm in arms))
    rows = list(rows)
    bases = rung_baselines(arms, arm_keys)  # each arm's baseline: row 0, or at its rung
    _add_tests(rows, alpha, bases)
    _eval_noise_of_diffs(rows, compared, bases)
    budget = budget_summary(records, rows, warnings)
    ladder = analyze_ladder(arms, compared, arm_keys, scored_loss, alpha)
    if ladder is not None and not lr_sweep:
        warnings.append("ladder at one fixed LR for every rung: the optimum moves with size")
    warnings += pooling_differences(records)
    result = {
        "setup": {**_setup(records, arm_keys, lr_sweep, alpha, proto, unit), "budget": budget},
        "baseline": rows[0]["label"],
        "seed_noise": rows[0]["seed_noise"],
        "eval_noise": rows[0]["eval_noise"],
        "arms": rows,
        "ladder": ladder,
        **_run_lists(arms),
        "warnings": warnings,
    }
    curves = [[r for r in runs if r.status != "diverged"] for runs in compared]
    return Analysis(json_ready(result), arms, curves, warnings)


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


def compare_runs(dirs: list[str], baseline: str | None = None, alpha: float = 0.05, **kw) -> dict:
    """The compare.json dict for the runs under ``dirs`` (no files written)."""
    return analyze(load_records(dirs), baseline=baseline, alpha=alpha, **kw).result


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
    from archlab.runs.workspace import add_arguments as workspace_arguments

    workspace_arguments(p)  # --wandb-workspace ENTITY/PROJECT [--sweep NAME] [--dry-run]
    p.add_argument(
        "--tune", choices=["lr"], help="compare each arm at its LR tuned on the scout seeds"
    )
    p.add_argument("--scout-seeds", metavar="0,1", help="seeds that pick the LR (default: first)")
    p.add_argument("--confirm-seeds", metavar="2-8", help="seeds compared (default: the rest)")
    p.add_argument(
        "--bpb",
        action="store_true",
        help="compare in bits per byte (automatic when the arms' tokenizers differ)",
    )
    return p


def _seeds(text: str | None, flag: str) -> list[int] | None:
    from archlab.runs.tuning import parse_seeds

    try:
        return parse_seeds(text)
    except ValueError as err:
        raise CompareError(f"{flag}: {err}") from None


def _out_dir(args) -> Path:
    if args.out:
        return Path(args.out)
    if args.wandb:
        return Path("compare-" + args.wandb.replace("/", "-"))
    return Path(args.dirs[0]) / "compare"


def _run(args) -> Analysis:
    if args.x not in X_CHOICES:
        raise CompareError(f"--x must be one of {'|'.join(X_CHOICES)}, got {args.x!r}")
    if not args.dirs and not args.wandb:
        raise CompareError("give run/sweep directories or --wandb ENTITY/PROJECT/GROUP")
    scout = _seeds(args.scout_seeds, "--scout-seeds")
    confirm = _seeds(args.confirm_seeds, "--confirm-seeds")
    records = load_records(args.dirs, args.wandb)
    return analyze(records, args.baseline, args.alpha, args.tune, scout, confirm, args.bpb)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit code (2 for user errors, printed as one line)."""
    try:
        args = build_parser().parse_args(argv)
        if args.wandb_workspace:  # a W&B dashboard instead of a local report
            from archlab.runs.workspace import run as save_workspace

            return save_workspace(args)
        analysis = _run(args)

        x_axes = ["step", "tokens", "flops", "time"] if args.x == "all" else [args.x]
        written = write_outputs(analysis, _out_dir(args), x_axes)
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
