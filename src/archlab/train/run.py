"""One training job: typed config → data → model → Trainer.fit → run record.

Called once per Hydra job by ``archlab.cli``; everything here is plain Python, so tests and
other tools can call :func:`train` directly. :func:`train` reads top to bottom: prepare (data,
config record), build (module, checkpointing, loggers, trainer), fit, finalise (summary.json,
loggers); failures are recorded by :func:`_record_failure`, outside that happy path.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import torch
from omegaconf import OmegaConf

from archlab.config import ArchlabConfig, ConfigError
from archlab.data.store import TokenSplits, data_regime, load_tokens
from archlab.data.windows import TrainBatches, train_loader, val_windows
from archlab.model.cache import kv_bytes_per_token
from archlab.model.flops import d_ff, iso_params_reference, param_count
from archlab.runs.record import write_json
from archlab.startup import process_start_time
from archlab.train.callbacks import DivergenceStop, Telemetry
from archlab.train.checkpoint import (
    Checkpointing,
    find_resume,
    remove_stale_temps,
    truncate_metrics,
)
from archlab.train.distributed import (
    MicroBatches,
    configure_process,
    launch_rank,
    local_devices,
    srun_tasks,
    trainer_kwargs,
)
from archlab.train.faults import Interrupted, SignalGuard, check_run_environment, describe_error
from archlab.train.lock import RunLock
from archlab.train.loggers import finish_loggers, make_loggers
from archlab.train.module import LitLM
from archlab.validate import validate

log = logging.getLogger("archlab")


@dataclass
class Job:
    """Who this run is, as W&B and the run record name it."""

    run_dir: Path
    overrides: list[str] = field(default_factory=list)  # e.g. ["model/mlp=gelu", "seed=1"]
    group: str = "default"  # the sweep / experiment
    choices: dict[str, str] = field(default_factory=dict)  # config-group choices (knob options)
    swept: list[str] | None = None  # the keys a sweep varies (W&B job_type); None: unknown

    @property
    def name(self) -> str:  # the override string (console lines)
        return ",".join(self.overrides) or "default"


def _quiet_libraries() -> None:
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    # Lightning's banner lines (GPU available …, tips) are noise in sweep logs
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)


def _configure_torch(cfg: ArchlabConfig):
    on_gpu = cfg.trainer.accelerator in ("gpu", "cuda") or (
        cfg.trainer.accelerator == "auto" and torch.cuda.is_available()
    )
    local = 1 if srun_tasks() > 1 else local_devices(cfg, on_gpu) or 1  # ranks on this node
    configure_process(cfg, on_gpu, local)  # again in every worker (LitLM.setup)
    precision = cfg.trainer.precision or ("bf16-mixed" if on_gpu else "32-true")
    deterministic = (
        cfg.trainer.deterministic if cfg.trainer.deterministic is not None else not on_gpu
    )
    return precision, deterministic, on_gpu


@dataclass
class RunState:
    """One run in progress: what :func:`train`'s steps build and its summary record."""

    cfg: ArchlabConfig
    job: Job
    run_dir: Path
    summary: dict
    start: float
    t0: float  # start-up = first optimizer step − t0 (summary startup_sec)
    guard: SignalGuard
    lock: RunLock | None = None
    had_record: bool = False  # summary.json existed: a refused start must leave it alone
    keep_record: bool = False
    loggers: list = field(default_factory=list)
    wandb_error: str | None = None  # W&B could not start for this job (it trains without)
    precision: str = "32-true"
    deterministic: bool = True
    on_gpu: bool = False
    writer: bool = True  # under srun every rank runs train(): rank 0 writes the run record
    accum: int = 1  # micro-batches per optimizer step
    batches: TrainBatches | None = None
    lit: LitLM | None = None
    ckpt: Checkpointing | None = None
    trainer: L.Trainer | None = None
    config_dict: dict | None = None  # the resolved config (its data_info carries the corpus hash)
    planned_budget: dict | None = None  # train.budget as planned (train/budget.py)
    cpu0: float = 0.0  # this process's CPU-seconds when the job started (0: the first job)


def train(cfg: ArchlabConfig, job: Job, callbacks: tuple = ()) -> dict:
    """Train one run; always writes summary.json and finishes the W&B run, also on failure.
    ``callbacks``: extra Lightning callbacks (``archlab bench`` times steps with one)."""
    run = _begin(cfg, job)
    try:
        data, config_dict = _prepare(run)
        _build(run, data, config_dict, callbacks)
        _fit(run)
    except BaseException as e:  # record, then let the caller decide (sweeps keep going)
        _record_failure(run, e)
        raise
    finally:
        _finalise(run)
    return run.summary


def _begin(cfg: ArchlabConfig, job: Job) -> RunState:
    run_dir = Path(job.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = RunLock(run_dir).acquire()  # one process per run dir (rank 0): refused otherwise
    remove_stale_temps(run_dir)  # a killed writer's temp files (no live writer: we hold the lock)
    summary: dict = {
        "status": "failed",
        "steps": 0,
        "tokens": 0,
        "val_loss": None,
        "train_loss": None,
        "params": None,
        "tokens_per_sec": None,
        "seed": cfg.seed,
        "overrides": job.overrides,
        "choices": job.choices,
        "wandb_dir": None,
        "diverged_at_step": None,
        "error": None,
        "flops_per_token": None,
        "elapsed_sec": None,
        "run_dir": str(run_dir),
    }
    start = time.time()
    guard = SignalGuard().install()  # SIGTERM/SIGINT: checkpoint, then stop cleanly
    t0, cpu0 = _process_start(start)
    run = RunState(cfg, job, run_dir, summary, start, t0, guard, lock, cpu0=cpu0)
    run.writer = launch_rank() == 0
    run.had_record = (run_dir / "summary.json").exists()
    return run


def _prepare(run: RunState) -> tuple[TokenSplits, dict]:
    """Seed, tokens, the final check of the config, and the run record's config.yaml."""
    cfg, summary = run.cfg, run.summary
    _quiet_libraries()
    run.precision, run.deterministic, run.on_gpu = _configure_torch(cfg)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    data = load_tokens(cfg.data, cfg.tokenizer)
    cfg.model.vocab_size = data.model_vocab_size  # tokenizer vocab padded to a multiple of 64
    validate(cfg)
    check_run_environment(cfg)
    summary["d_ff"] = d_ff(cfg.model)  # the MLP width actually built
    if cfg.model.iso_params:  # and the parameter count it was matched to
        summary["iso_params_target"] = param_count(iso_params_reference(cfg.model))
    config_dict = OmegaConf.to_container(OmegaConf.structured(cfg))
    config_dict["data_info"] = data.info()
    resume = find_resume(run.run_dir, cfg.resume)  # a refusal here leaves the record alone
    run.ckpt = Checkpointing(cfg, run.run_dir, config_dict, resume, run.guard)
    if run.writer:
        (run.run_dir / "config.yaml").write_text(OmegaConf.to_yaml(config_dict))
        data.save_tokenizer(run.run_dir)
    run.config_dict = config_dict
    run.planned_budget = _apply_budget(cfg)  # derives max_steps from train.budget
    summary.update(
        data_regime(
            len(data.train),
            cfg.train.max_steps,
            cfg.train.batch_size,
            cfg.model.block_size,
            cfg.data.single_epoch,
        )
    )
    return data, config_dict


def _build(run: RunState, data: TokenSplits, config_dict: dict, callbacks: tuple) -> None:
    """The LightningModule (restored when resuming), checkpointing, loggers and the Trainer."""
    cfg, summary = run.cfg, run.summary
    T = cfg.model.block_size
    run.batches = TrainBatches(data.train, T, cfg.train.batch_size, cfg.seed)
    run.lit = LitLM(cfg, val_windows(data.val, T, cfg.data.val_windows), data.val)
    run.ckpt.restore_module(run.lit)  # resume: weights + counters; optimizer etc. at train start
    if run.writer:
        truncate_metrics(run.run_dir, run.ckpt.start_step)  # rows logged after the checkpoint go
    summary["resumed_from_step"] = run.ckpt.start_step or None
    summary.update(
        params=run.lit.model.num_params(),
        flops_per_token=run.lit.flops_per_token,
        kv_cache_bytes_per_token=kv_bytes_per_token(cfg.model),
    )
    run.loggers, run.wandb_error = make_loggers(
        cfg, run.job, config_dict, run.ckpt.wandb_id, run.job.swept
    )
    summary["wandb_dir"] = next((lg.run_dir for lg in run.loggers if hasattr(lg, "run_dir")), None)
    run.ckpt.wandb_id = next((lg.run_id for lg in run.loggers if hasattr(lg, "run_id")), None)
    parallel = trainer_kwargs(cfg, run.on_gpu)  # devices, nodes, strategy, accumulation
    run.accum = parallel["accumulate_grad_batches"]
    run.trainer = L.Trainer(
        accelerator=cfg.trainer.accelerator,
        **parallel,
        precision=run.precision,
        deterministic=run.deterministic,
        max_steps=cfg.train.max_steps,
        max_epochs=1,
        logger=run.loggers,
        enable_checkpointing=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        log_every_n_steps=min(cfg.train.log_every, cfg.train.max_steps),
        enable_progress_bar=_progress_bar_wanted(),
        callbacks=[*_callbacks(cfg), *callbacks, run.ckpt],
        default_root_dir=run.run_dir,
        use_distributed_sampler=False,
    )


def _fit(run: RunState) -> None:
    """Trainer.fit from the resumed step; the run's status."""
    cfg, lit, ckpt = run.cfg, run.lit, run.ckpt
    first = min(ckpt.start_step, cfg.train.max_steps)
    k = run.accum  # the loader yields micro-batches: k per optimizer step
    run.summary.update(world_size=run.trainer.world_size, micro_batches_per_step=k)
    loader = train_loader(MicroBatches(run.batches, k), first * k, cfg.train.max_steps * k)
    run.trainer.fit(lit, train_dataloaders=loader)
    ckpt.collect_rank0(lit, run.trainer)  # ddp_spawn / ddp_notebook: rank 0 state to here
    if run.guard.signum is not None:  # stopped early by SIGTERM/SIGINT: interrupted
        raise Interrupted(run.guard.signum)
    run.summary["status"] = "diverged" if lit.diverged_at_step else "completed"
    run.summary["diverged_at_step"] = lit.diverged_at_step
    if lit.diverged_at_step:
        log.warning(
            "archlab: run diverged at step %d (loss %s); stopped",
            lit.diverged_at_step,
            lit.last_train_loss,
        )


def _record_failure(run: RunState, e: BaseException) -> None:
    """An error: its one line goes into the summary (the caller re-raises). A SIGTERM/SIGINT:
    a clean stop (checkpoint kept, status interrupted), exiting with 128 + the signal."""
    if run.guard.signum is None:
        run.summary["error"] = describe_error(e, run.run_dir)
        run.keep_record = run.had_record and isinstance(e, ConfigError) and run.lit is None
        return
    if run.ckpt is not None:  # SIGTERM/SIGINT (SIGTERMException is a SystemExit): clean stop
        run.ckpt.collect_rank0(run.lit, run.trainer)
    run.summary["status"] = "interrupted"
    at = run.lit.global_step if run.lit is not None else 0
    kept = run.ckpt.path if run.ckpt is not None and run.ckpt.path.exists() else None
    advice = (
        f"checkpoint: {kept}; continue with resume=auto"
        if kept
        else "no checkpoint was written (train.ckpt_every=0?): a re-run starts from step 0"
    )
    run.summary["error"] = f"interrupted by {run.guard.name} at step {at}; {advice}"
    log.warning("archlab: %s", run.summary["error"])
    raise SystemExit(run.guard.exit_code) from None


def _finalise(run: RunState) -> None:
    """Counters into the summary, loggers finished, summary.json written (unless a refused
    start would overwrite an existing run's record), the run dir's lock released."""
    run.guard.restore()
    try:
        _finish_record(run)
    finally:
        if run.lock is not None:
            run.lock.release()


def _finish_record(run: RunState) -> None:
    summary, lit = run.summary, run.lit
    if lit is not None:
        steps = lit.global_step
        summary.update(
            steps=steps,
            tokens=steps * lit.tokens_per_step,
            val_loss=lit.last_val_loss,
            train_loss=lit.last_train_loss,
            val_loss_at=lit.val_loss_at or None,
            tokens_per_sec=(steps * lit.tokens_per_step / lit.train_time)
            if lit.train_time > 0
            else None,
            startup_sec=round(lit.first_step_wall - run.t0, 3) if lit.first_step_wall else None,
        )
    if summary.get("train_tokens"):  # epochs of the training split actually seen
        summary["epochs"] = round(summary["tokens"] / summary["train_tokens"], 4)
    summary["elapsed_sec"] = round(time.time() - run.start, 3)
    _record_measurements(run)
    finish_loggers(run.loggers, summary, _model_artifact(run))
    errors = [run.wandb_error, *(getattr(lg, "error", None) for lg in run.loggers)]
    if any(errors):  # W&B failed to start, mid-run or at finish: the record says so
        summary["wandb_error"] = next(e for e in errors if e)
    if run.writer and not run.keep_record:
        write_json(run.run_dir / "summary.json", summary)


def _apply_budget(cfg: ArchlabConfig) -> dict | None:
    """Derive ``train.max_steps`` from ``train.budget`` (None without a budget)."""
    from archlab.model.flops import train_flops_per_token  # torch: the training path has it
    from archlab.train.budget import apply

    return apply(cfg, train_flops_per_token(cfg.model))


def _record_measurements(run: RunState) -> None:
    """Budget achieved, evaluation noise, long-context reports and provenance (summary.json)."""
    from archlab.runs.provenance import collect, usage
    from archlab.train.budget import achieved

    summary, cfg, lit = run.summary, run.cfg, run.lit
    corpus = ((run.config_dict or {}).get("data_info") or {}).get("fingerprint")
    summary["provenance"] = {**collect(cfg.trainer.threads, corpus), **usage(run.cpu0)}
    if lit is None:
        return
    summary["budget"] = achieved(
        run.planned_budget,
        cfg.train.max_steps,
        lit.global_step,
        summary["tokens"],
        lit.flops_per_token,
        lit.train_time,
    )
    summary["val_loss_se"] = lit.last_val_se
    summary["val_window_losses"] = lit.last_val_windows or None
    summary["long_context"] = lit.long_context or None


def _model_artifact(run: RunState) -> Path | None:
    """The checkpoint W&B uploads as a model artifact (``logger.log_model=true``)."""
    ckpt = run.ckpt
    if not run.cfg.logger.log_model or ckpt is None or not ckpt.path.exists():
        return None
    return ckpt.path


_FIRST_JOB = [True]


def _process_start(now: float) -> tuple[float, float]:
    """Where this job's wall and CPU clocks start: at the process start for the first job in
    this process (its start-up cost is the job's), then at train()'s start."""
    from archlab.runs.provenance import cpu_seconds

    first, _FIRST_JOB[0] = _FIRST_JOB[0], False
    if first:
        return process_start_time() or now, 0.0
    return now, cpu_seconds() or 0.0


def _progress_bar_wanted() -> bool:
    return sys.stdout.isatty() and os.environ.get("CI") is None


def _callbacks(cfg: ArchlabConfig) -> list:
    callbacks = []
    if cfg.train.divergence_factor > 0:
        callbacks.append(DivergenceStop(cfg.train.divergence_factor, cfg.train.divergence_patience))
    if cfg.train.telemetry_every > 0:
        callbacks.append(Telemetry(cfg.train.telemetry_every))
    if _progress_bar_wanted():
        from lightning.pytorch.callbacks import RichProgressBar  # rich: only on a terminal

        callbacks.append(RichProgressBar(leave=True))
    return callbacks
