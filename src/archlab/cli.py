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

# the top-level conf/ (src/archlab/conf links to it; an installed wheel holds a copy)
CONF_DIR = os.environ.get("ARCHLAB_CONF") or str((Path(__file__).parent / "conf").resolve())

COMMANDS = {  # name -> "module:function(argv) -> exit code"
    "train": ("archlab.cli:train_main", "train one model or a sweep (Hydra overrides)"),
    "compare": ("archlab.runs.compare:main", "compare runs / sweeps: arms, seeds, verdicts"),
    "reproduce": ("archlab.claims:main", "run a lecture claim's sweep and write its verdict"),
    "generate": ("archlab.generate:main", "sample from a checkpoint or HF dir (KV cache)"),
    "bench": ("archlab.bench:main", "measure throughput, MFU, start-up and decode speed"),
}


def main(argv: list[str] | None = None) -> int:
    from archlab.startup import install

    install()  # keep torchmetrics' optional integrations off start-up (archlab/startup.py)
    argv = sys.argv[1:] if argv is None else argv
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


# ---------------------------------------------------------------------- train

_HYDRA_FLAGS_WITH_VALUE = {
    "--cfg",
    "-c",
    "--package",
    "-p",
    "--info",
    "--config-path",
    "-cp",
    "--config-name",
    "-cn",
    "--config-dir",
    "-cd",
    "--experimental-rerun",
}


def _overrides(args: list[str]) -> tuple[list[str], bool, bool]:
    """(override strings, multirun?, only-inspecting? e.g. --help/--cfg) from Hydra's argv."""
    overrides, multirun, inspect, skip = [], False, False, False
    for a in args:
        if skip:
            skip = False
        elif a in ("-m", "--multirun"):
            multirun = True
        elif a in ("-h", "--help", "--hydra-help", "--version", "--shell-completion", "-sc"):
            inspect = True
        elif a in _HYDRA_FLAGS_WITH_VALUE:
            inspect |= a in ("--cfg", "-c", "--info")
            skip = True
        elif not a.startswith("-"):
            overrides.append(a)
    return overrides, multirun, inspect


def _one_line(exc: BaseException) -> str:
    """Hydra's multi-line composition errors (and their causes), folded into one line."""
    import re

    full_key = getattr(exc, "full_key", None)  # OmegaConf: e.g. `+train.foo=1` in the schema merge
    if full_key and str(exc).startswith("Key '") and " not in " in str(exc):
        return (
            f"{full_key} is not a config key ({str(exc).splitlines()[0]}): check the "
            "spelling, or list all keys with `archlab train --cfg job`"
        )
    chain: list[list[str]] = []
    while exc is not None:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        chain.append(lines or [type(exc).__name__])
        exc = exc.__cause__
    text = " ".join(chain[0])
    missing = re.search(r"Could not find '([^']+)'", text)
    if missing and "Available options" in text:
        group, _, option = missing.group(1).rpartition("/")
        i = next(i for i, ln in enumerate(chain[0]) if "Available options" in ln)
        options = [ln for ln in chain[0][i + 1 :] if " " not in ln and ":" not in ln]
        return f"{group}={option} is not an option; choose one of: {', '.join(options)}"
    first = chain[0][0].rstrip(".")
    cause = chain[-1][0] if len(chain) > 1 else ""
    if "Could not override" in first or " not in " in cause:
        key = re.search(r"'([^']+)'", first)
        return (
            f"{key.group(1) if key else first} is not a config key ({cause}): check the "
            "spelling, or list all keys with `archlab train --cfg job`"
        )
    if first.startswith("Error merging override"):
        return f"{first.removeprefix('Error merging override ')}: {cause}"
    return f"{first}: {cause}" if cause else first


def _jobs(overrides: list[str], multirun: bool) -> list[list[str]]:
    """The override lists of every job this command would launch (for up-front validation)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    try:
        parsed = parser.parse_overrides(
            [o for o in overrides if not o.lstrip("+~").startswith("hydra")]
        )
    except Exception as e:
        raise ConfigError(
            f"cannot parse the overrides {' '.join(overrides)!r}: {_one_line(e)}"
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
    from hydra import compose, initialize_config_dir

    from archlab.config import register_schema, to_dataclass, validate
    from archlab.data.sources import SOURCES

    register_schema()
    jobs = _jobs(overrides, multirun)
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3", job_name="train"):
        for job in jobs:
            try:
                cfg = to_dataclass(compose(config_name="train", overrides=list(job)))
            except ConfigError:
                raise
            except Exception as e:
                raise ConfigError(_one_line(e)) from None
            validate(cfg)
            SOURCES[cfg.data.source].check(cfg.data)
    return len(jobs)


def train_main(args: list[str]) -> int:
    from archlab.train.faults import check_writable, resume_args

    overrides, multirun, inspect = _overrides(args)
    args = resume_args(args, overrides, multirun)  # resume=<run dir>: that run's overrides
    overrides, multirun, inspect = _overrides(args)
    if not inspect:
        prevalidate(overrides, multirun)
        for o in overrides:  # an explicit output location must be writable too
            key, _, value = o.lstrip("+").partition("=")
            if key in ("hydra.run.dir", "hydra.sweep.dir"):
                check_writable(value, key)
    _register_resolvers()
    sys.argv = ["archlab train", *args]
    _hydra_entry()
    return 0


def _register_resolvers() -> None:
    from omegaconf import OmegaConf

    from archlab.config import register_schema

    register_schema()
    if not OmegaConf.has_resolver("slug"):  # a directory name from an override string
        OmegaConf.register_new_resolver(
            "slug", lambda s: (s or "default").replace("/", ".").replace(" ", "")[:200]
        )


def _task(cfg) -> float | None:
    """One Hydra job. Returns the final val loss: the objective for sweepers such as Optuna
    (+inf for a diverged run, None for a failed one)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from archlab.config import to_dataclass
    from archlab.runs.record import read_summary
    from archlab.train.run import Job, train

    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    run_dir = Path(hc.runtime.output_dir)
    job = Job(
        run_dir=run_dir,
        overrides=[
            o for o in hc.overrides.task if not o.startswith(("name=", "out_dir=", "resume="))
        ],
        group=cfg.name,
        choices={k: v for k, v in hc.runtime.choices.items() if not k.startswith("hydra")},
    )
    done = read_summary(run_dir) if multirun else None
    if done and done.get("status") in ("completed", "diverged"):  # re-run sweep: resume it
        print(f"archlab: skipping {job.name}: already {done['status']} ({run_dir})", flush=True)
        return _objective(done)
    typed = to_dataclass(cfg)
    n_jobs = hc.launcher.get("n_jobs") if multirun else None
    if n_jobs and typed.trainer.threads is None:  # parallel jobs × threads ≤ cores
        cores = os.cpu_count() or 1
        typed.trainer.threads = max(1, cores // (cores if n_jobs < 0 else min(n_jobs, cores)))
    try:
        summary = train(typed, job)
    except ConfigError as e:
        print(f"archlab train: error: {e}", file=sys.stderr)
        if multirun:
            return None
        raise SystemExit(2) from None
    except Exception as e:
        if not multirun:
            raise
        print(f"archlab train: job {job.name} failed: {type(e).__name__}: {e}", file=sys.stderr)
        return None  # one failing job never aborts the sweep; summary.json says failed
    _report(summary, run_dir)
    return _objective(summary)


def _objective(summary: dict) -> float | None:
    return float("inf") if summary["status"] == "diverged" else summary.get("val_loss")


def _report(s: dict, run_dir: Path) -> None:
    def fmt(v, spec):
        return format(v, spec) if isinstance(v, (int, float)) else "n/a"

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
    import hydra

    hydra.main(config_path=CONF_DIR, config_name="train", version_base="1.3")(_task)()
