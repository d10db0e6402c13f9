"""``archlab <command>``: train | compare | reproduce | generate | bench (see COMMANDS).

``archlab train [hydra overrides…]`` composes ``conf/train.yaml`` with Hydra, validates every
job of the (multi)run up front — a mistake exits 2 with one line before any output directory
exists — then hands over to Hydra, which runs one :func:`archlab.train.run.train` per job.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

from archlab.config import ConfigError
from archlab.errors import describe
from archlab.runs.values import fmt
from archlab.startup import install as lean_imports

COMMANDS = {  # name -> "module:function(argv) -> exit code"
    "train": ("archlab.cli:train_main", "train one model or a sweep (Hydra overrides)"),
    "compare": ("archlab.runs.compare:main", "compare runs / sweeps: arms, seeds, verdicts"),
    "reproduce": (
        "archlab.claims.campaign:main",
        "run a lecture claim's sweep and write its verdict",
    ),
    "generate": ("archlab.generate:main", "sample from a checkpoint or HF dir (KV cache)"),
    "bench": ("archlab.bench:main", "measure throughput, MFU, start-up and decode speed"),
    "prepare": ("archlab.cli:prepare_main", "build the token store(s) of a train command, once"),
}


def main(argv: list[str] | None = None) -> int:
    lean_imports()  # keep torchmetrics' optional integrations off start-up (archlab/startup.py)
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["--version"], ["-V"]):
        from importlib.metadata import PackageNotFoundError, version

        try:
            print(f"archlab {version('archlab')}")
        except PackageNotFoundError:  # a source checkout on PYTHONPATH, not installed
            print("archlab (not installed: source checkout)")
        return 0
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print("usage: archlab <command> [args]\n\ncommands:")
        for name, (_, help_) in COMMANDS.items():
            print(f"  {name:10s} {help_}")
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\narchlab: error: unknown command {argv[0]!r}", file=sys.stderr)
            return 2
        return 0
    target, _ = COMMANDS[argv[0]]
    module, func = target.split(":")
    try:
        return getattr(importlib.import_module(module), func)(argv[1:]) or 0
    except ConfigError as e:
        print(f"archlab {argv[0]}: error: {e}", file=sys.stderr)
        return 2


# ---------------------------------------------------------------------- prepare

PREPARE_USAGE = """usage: archlab prepare [-m] [hydra overrides…]

Build (or find) the token store that `archlab train` with the same overrides would use, print
where it is and its identity, and train nothing. With -m, every distinct store of the sweep.
Later runs and sweeps with the same data.* and tokenizer.* settings reuse it."""


def prepare_main(args: list[str]) -> int:
    if args[:1] in (["-h"], ["--help"]):
        print(PREPARE_USAGE)
        return 0
    from archlab.compose import Composer, knob_group_overrides  # Hydra: this command only
    from archlab.data.sources import SOURCES  # (as above)
    from archlab.train.paths import resolve_user_paths  # (as above)

    overrides, multirun, inspecting = _overrides(knob_group_overrides(args))
    if inspecting:  # --cfg/--info/--hydra-help only print: prepare would build regardless
        raise ConfigError(
            "archlab prepare builds stores and takes no --cfg/--info/--hydra-help: to see the "
            "config, run `archlab train` with the same overrides and --cfg job"
        )
    stores = {}  # one build per distinct (data, tokenizer) config, in the jobs' order
    with Composer() as composer:
        for job in _jobs(overrides, multirun):
            cfg = composer.compose(job)
            resolve_user_paths(cfg, os.getcwd())  # as every train job does
            SOURCES[cfg.data.source].check(cfg.data)
            stores.setdefault(repr((cfg.data, cfg.tokenizer)), cfg)
    for cfg in stores.values():
        _prepare_store(cfg.data, cfg.tokenizer)
    return 0


def _prepare_store(data_cfg, tokenizer_cfg) -> None:
    from archlab.data.store import intact, load_tokens, store_dir  # with prepare only

    existed = intact(store_dir(data_cfg, tokenizer_cfg))
    d = load_tokens(data_cfg, tokenizer_cfg)
    m = d.meta
    print(
        f"archlab prepare: {'reused' if existed else 'built'} token store {d.store_dir}\n"
        f"  corpus {d.description} · fingerprint {d.fingerprint}\n"
        f"  tokenizer {m['tokenizer']} (vocab {d.vocab_size}, model vocab "
        f"{d.model_vocab_size}) · {len(d.train):,} train + {len(d.val):,} val tokens "
        f"({m['dtype']}) · built in {fmt(m.get('build_sec'), '.1f')} s with "
        f"{m.get('workers', 1)} worker(s)",
        flush=True,
    )


# ---------------------------------------------------------------------- train


def _overrides(args: list[str]) -> tuple[list[str], bool, bool]:
    """(override strings, multirun?, only-inspecting? e.g. --help/--cfg), read with the
    argument parser of Hydra's own ``@hydra.main``."""
    from hydra._internal.utils import get_args_parser  # Hydra: `archlab train` only

    parser = get_args_parser()

    def error(message: str):
        raise ConfigError(f"{message} (`archlab train --help` lists the flags)")

    parser.error = error  # one line, no usage block
    ns = parser.parse_args(args)
    inspect = any((ns.help, ns.hydra_help, ns.cfg, ns.shell_completion)) or ns.info is not None
    return list(ns.overrides), bool(ns.multirun), inspect


def _jobs(overrides: list[str], multirun: bool) -> list[list[str]]:
    """The override lists of every job this command would launch (for up-front validation)."""
    # Hydra's parser: only when composing (keeps `archlab --help` and the others fast)
    from hydra._internal.core_plugins.basic_sweeper import (
        BasicSweeper,  # Hydra: only for `archlab train`
    )
    from hydra.core.override_parser.overrides_parser import (
        OverridesParser,  # (`archlab --help`, compare …
    )

    from archlab.compose import hydra_error_line  # … and generate start without Hydra / torch)

    parser = OverridesParser.create()
    try:
        parsed = parser.parse_overrides(
            [o for o in overrides if not o.lstrip("+~").startswith("hydra")]
        )
    except Exception as e:
        raise ConfigError(
            f"cannot parse the overrides {' '.join(overrides)!r}: {hydra_error_line(e)}"
        ) from None
    if not multirun:
        for p in parsed:
            if p.is_sweep_override():
                raise ConfigError(
                    f"{p.input_line} is a sweep: add -m (archlab train -m …) to run every value"
                )
        return [[p.input_line for p in parsed]]
    custom_sweeper = any(o.startswith("hydra/sweeper=") for o in overrides)
    if custom_sweeper:  # e.g. optuna's interval(): its search space is the sweeper's business
        parsed = [p for p in parsed if not p.is_sweep_override()]
    return BasicSweeper.split_arguments(parsed, None)[0]


def prevalidate(overrides: list[str], multirun: bool) -> int:
    """Compose and validate every job; raise ConfigError on the first bad one. Returns #jobs."""
    from archlab.compose import Composer  # composing imports Hydra and the registries (torch)
    from archlab.train.extras import check_logger_kinds  # with compose: `archlab train` only
    from archlab.train.faults import check_run_environment  # with compose: `archlab train` only
    from archlab.train.preflight import preflight  # (as above)

    jobs = _jobs(overrides, multirun)
    with Composer() as composer:
        for job in jobs:
            cfg = composer.compose(job)
            check_logger_kinds(cfg.logger.kinds)
            check_run_environment(cfg, data=True)
            if not multirun:  # lock and resume: before Hydra writes into the run dir
                preflight(cfg, overrides)
    return len(jobs)


def train_main(args: list[str]) -> int:
    from archlab.train.extras import check_overrides  # light: before anything heavy loads

    check_overrides(args)  # an option whose extra is not installed: one line, before any import
    from archlab.compose import knob_group_overrides, register_schema  # Hydra: `archlab train`
    from archlab.train.faults import check_writable, resume_args  # `archlab train` only

    args = knob_group_overrides(args)  # model.mlp=gelu (W&B sweeps) → model/mlp=gelu
    overrides, multirun, inspect = _overrides(args)
    args = resume_args(args, overrides, multirun)  # resume=<run dir>: that run's overrides
    overrides, multirun, inspect = _overrides(args)
    if not inspect:
        from archlab.train.preflight import AlreadyComplete  # `archlab train` only

        try:
            prevalidate(overrides, multirun)
        except AlreadyComplete as done:
            print(done, flush=True)
            return 0
        for o in overrides:  # an explicit output location must be writable too
            key, _, value = o.lstrip("+").partition("=")
            if key in ("hydra.run.dir", "hydra.sweep.dir"):
                check_writable(value, key)
    register_schema()
    sys.argv = ["archlab train", *args]
    _FAILED_JOBS.clear()
    _RAN_JOBS.clear()
    try:
        _hydra_entry()
    finally:
        _close_wandb()
    return _sweep_outcome()


def _close_wandb() -> None:
    """Tear down W&B's service here rather than in its atexit hook, which prints a 30-line
    traceback when the service has died (a killed ``wandb-core``)."""
    if "wandb" in sys.modules:
        from archlab.train.wandb import reset_service  # only if a job used W&B

        reset_service()


_FAILED_JOBS: list[str] = []  # names of this sweep's jobs that failed (they print one line each)
_RAN_JOBS: list[str] = []


def _sweep_outcome() -> int:
    """0 if every job of the (multi)run trained; else one line with the count, exit 1."""
    if not _FAILED_JOBS:
        return 0
    print(
        f"archlab train: {len(_FAILED_JOBS)} of {len(_RAN_JOBS)} jobs failed "
        f"({', '.join(_FAILED_JOBS[:3])}{', …' if len(_FAILED_JOBS) > 3 else ''}); "
        "see their summary.json",
        file=sys.stderr,
    )
    return 1


def _task(cfg) -> float | None:
    """One Hydra job. Returns the final val loss: the objective for sweepers such as Optuna
    (+inf for a diverged run, None for a failed one)."""
    from hydra.core.hydra_config import HydraConfig  # a Hydra job: `archlab train` only
    from hydra.types import RunMode  # (as above)

    from archlab.compose import to_dataclass  # (as above)
    from archlab.runs.record import read_summary  # (as above)
    from archlab.train.paths import resolve_user_paths  # (as above)

    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    run_dir = Path(hc.runtime.output_dir)
    job = _job(hc, cfg.name, multirun)
    done = read_summary(run_dir) if multirun else None
    if done and done.get("status") in ("completed", "diverged"):  # re-run sweep: resume it
        print(f"archlab: skipping {job.name}: already {done['status']} ({run_dir})", flush=True)
        return _objective(done)
    typed = to_dataclass(cfg)
    resolve_user_paths(typed, hc.runtime.cwd)  # relative to the launch dir, also under chdir
    n_jobs = hc.launcher.get("n_jobs") if multirun else None
    if n_jobs and typed.trainer.threads is None:  # parallel jobs × threads ≤ cores
        cores = os.cpu_count() or 1
        typed.trainer.threads = max(1, cores // (cores if n_jobs < 0 else min(n_jobs, cores)))
    summary = _run_job(typed, job, multirun)
    if summary is None:
        return None
    _report(summary, run_dir)
    return _objective(summary)


def _job(hc, group: str, multirun: bool):
    """Who this Hydra job is: its identifying overrides, sweep, knob choices, swept keys."""
    from archlab.runs.naming import job_overrides  # (as in _task)
    from archlab.train.run import Job  # Lightning: `archlab train` only

    return Job(
        run_dir=Path(hc.runtime.output_dir),
        overrides=job_overrides(hc.overrides.task),
        group=group,
        choices={k: v for k, v in hc.runtime.choices.items() if not k.startswith("hydra")},
        swept=_swept_keys(hc, multirun),
    )


def _swept_keys(hc, multirun: bool) -> list[str] | None:
    """The keys a sweep varies (the W&B ``job_type``): a W&B agent's sweep parameters, or a
    Hydra multirun's sweep overrides (from its ``multirun.yaml``) and sweeper params; None
    for a single run (then every identifying override counts)."""
    import yaml  # (as in _task)

    agent_params = os.environ.get("WANDB_SWEEP_PARAM_PATH")  # set by `wandb agent`
    if agent_params and Path(agent_params).is_file():
        params = yaml.safe_load(Path(agent_params).read_text()) or {}
        return [k for k in params if k != "wandb_version"]
    if not multirun:
        return None
    keys = [str(k) for k in (hc.sweeper.get("params") or {})]
    sweep_yaml = Path(hc.runtime.cwd) / hc.sweep.dir / "multirun.yaml"
    if sweep_yaml.is_file():
        from hydra.core.override_parser.overrides_parser import OverridesParser  # (as above)

        task = yaml.safe_load(sweep_yaml.read_text())["hydra"]["overrides"]["task"]
        parsed = OverridesParser.create().parse_overrides(task)
        keys += [p.key_or_group for p in parsed if p.is_sweep_override()]
    return keys


def _run_job(cfg, job, multirun: bool) -> dict | None:
    """train(); in a sweep a failing job prints one line and returns None (the sweep goes on;
    summary.json says failed), a single run exits 2 on a config mistake."""
    from archlab.train.run import train  # Lightning: `archlab train` only

    _RAN_JOBS.append(job.name)
    try:
        return train(cfg, job)
    except ConfigError as e:
        print(f"archlab train: error: {e}", file=sys.stderr)
        if multirun:
            _FAILED_JOBS.append(job.name)
            return None
        raise SystemExit(2) from None
    except Exception as e:
        if not multirun and not isinstance(e, (OSError, MemoryError, RuntimeError)):
            raise  # a bug: its traceback; the machine's faults below get one line
        print(f"archlab train: job {job.name} failed: {describe(e)}", file=sys.stderr)
        _FAILED_JOBS.append(job.name)
        if multirun:
            return None
        raise SystemExit(1) from None


def _objective(summary: dict) -> float | None:
    return float("inf") if summary["status"] == "diverged" else summary.get("val_loss")


def _report(s: dict, run_dir: Path) -> None:
    print(
        f"archlab: {s['status']} {s['steps']} steps · val_loss {fmt(s['val_loss'], '.4f')} · "
        f"train_loss {fmt(s['train_loss'], '.4f')} · {fmt(s['tokens_per_sec'], ',.0f')} tok/s · "
        f"{fmt(s['params'], ',')} params · {fmt(s['elapsed_sec'], '.1f')} s\n"
        f"  run dir: {run_dir}  (config.yaml, metrics.jsonl, summary.json)"
        + (
            f"\n  W&B run: {s['wandb_dir']}  (offline: `wandb sync {s['wandb_dir']}`)"
            if s.get("wandb_dir")
            else ""
        ),
        flush=True,
    )


def _hydra_entry() -> None:
    import hydra  # Hydra: `archlab train` only

    from archlab.compose import CONF_DIR  # (as above)

    hydra.main(config_path=CONF_DIR, config_name="train", version_base="1.3")(_task)()
