"""One training job: typed config → data → model → Trainer.fit → run record.

Called once per Hydra job by ``archlab.cli``; everything here is plain Python, so tests and
other tools can call :func:`train` directly.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from archlab.config import ArchlabConfig, d_ff, validate
from archlab.startup import install as _lean_imports

_lean_imports()  # the training path: before Lightning imports torchmetrics (archlab/startup.py)

log = logging.getLogger("archlab")


@dataclass
class Job:
    """Who this run is, as W&B and the run record name it."""

    run_dir: Path
    overrides: list[str] = field(default_factory=list)  # e.g. ["model/mlp=gelu", "seed=1"]
    group: str = "default"  # the sweep / experiment
    choices: dict[str, str] = field(default_factory=dict)  # config-group choices (knob options)

    @property
    def name(self) -> str:  # W&B run name: the override string
        return ",".join(self.overrides) or "default"

    @property
    def arm(self) -> str:  # W&B job_type: the overrides that are not the seed
        return ",".join(o for o in self.overrides if not o.startswith("seed=")) or "default"

    @property
    def tags(self) -> list[str]:
        return [
            f"{k.split('/')[-1]}={v}"
            for k, v in sorted(self.choices.items())
            if not k.startswith("hydra") and v is not None
        ][:60]


def _quiet_libraries() -> None:
    import warnings

    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    # Lightning's banner lines (GPU available …, tips) are noise in sweep logs
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)


def _configure_torch(cfg: ArchlabConfig):
    import torch

    torch.set_num_threads(cfg.trainer.threads or os.cpu_count() or 1)
    on_gpu = cfg.trainer.accelerator in ("gpu", "cuda") or (
        cfg.trainer.accelerator == "auto" and torch.cuda.is_available()
    )
    precision = cfg.trainer.precision or ("bf16-mixed" if on_gpu else "32-true")
    deterministic = (
        cfg.trainer.deterministic if cfg.trainer.deterministic is not None else not on_gpu
    )
    if on_gpu:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return precision, deterministic


def _make_loggers(cfg: ArchlabConfig, job: Job, config_dict: dict, wandb_id=None) -> list:
    from archlab.runs.record import JsonlLogger

    loggers = [JsonlLogger(job.run_dir)]
    if "wandb" in cfg.logger.kinds and cfg.logger.mode != "disabled":
        from archlab.train.wandb import make_wandb_logger

        loggers.append(make_wandb_logger(cfg, job, config_dict, run_id=wandb_id))
    if "csv" in cfg.logger.kinds:
        from lightning.pytorch.loggers import CSVLogger

        loggers.append(CSVLogger(save_dir=job.run_dir, name="csv", version=""))
    if "tensorboard" in cfg.logger.kinds:  # `tensorboard --logdir <sweep dir>`: runs side by side
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(
            TensorBoardLogger(
                save_dir=job.run_dir, name="tensorboard", version="", default_hp_metric=False
            )
        )
    return loggers


def train(cfg: ArchlabConfig, job: Job) -> dict:
    """Train one run; always writes summary.json and finishes the W&B run, also on failure."""
    from omegaconf import OmegaConf

    from archlab.runs.record import write_json
    from archlab.train.faults import Interrupted, SignalGuard, describe_error

    run_dir = Path(job.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
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
    planned_budget = config_dict = None
    t0 = _process_start(start)  # start-up = first optimizer step − t0 (summary startup_sec)
    loggers: list = []
    lit = ckpt = trainer = None
    guard = SignalGuard().install()  # SIGTERM/SIGINT: checkpoint, then stop cleanly
    try:
        import lightning as L

        from archlab.data.store import data_regime, load_tokens
        from archlab.data.windows import TrainBatches, train_loader, val_windows
        from archlab.model.cache import kv_bytes_per_token
        from archlab.train.checkpoint import Checkpointing, find_resume, truncate_metrics
        from archlab.train.module import LitLM

        _quiet_libraries()
        precision, deterministic = _configure_torch(cfg)
        L.seed_everything(cfg.seed, workers=True, verbose=False)
        data = load_tokens(cfg.data, cfg.tokenizer)
        cfg.model.vocab_size = data.model_vocab_size  # tokenizer vocab padded to a multiple of 64
        validate(cfg)
        summary["d_ff"] = d_ff(cfg.model)  # the MLP width actually built
        if cfg.model.iso_params:  # and the parameter count it was matched to
            from archlab.model.flops import iso_params_reference, param_count

            summary["iso_params_target"] = param_count(iso_params_reference(cfg.model))
        config_dict = OmegaConf.to_container(OmegaConf.structured(cfg))
        config_dict["data_info"] = data.info()
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(config_dict))
        data.save_tokenizer(run_dir)
        planned_budget = _apply_budget(cfg)  # derives max_steps from train.budget
        summary.update(
            data_regime(
                len(data.train),
                cfg.train.max_steps,
                cfg.train.batch_size,
                cfg.model.block_size,
                cfg.data.single_epoch,
            )
        )

        T = cfg.model.block_size
        batches = TrainBatches(data.train, T, cfg.train.batch_size, cfg.seed)
        lit = LitLM(cfg, val_windows(data.val, T, cfg.data.val_windows), data.val)
        ckpt = Checkpointing(cfg, run_dir, config_dict, find_resume(run_dir, cfg.resume), guard)
        ckpt.restore_module(lit)  # resume: weights + counters; optimizer etc. at train start
        truncate_metrics(run_dir, ckpt.start_step)  # rows logged after the checkpoint go
        summary["resumed_from_step"] = ckpt.start_step or None
        summary.update(
            params=lit.model.num_params(),
            flops_per_token=lit.flops_per_token,
            kv_cache_bytes_per_token=kv_bytes_per_token(cfg.model),
        )
        loggers = _make_loggers(cfg, job, config_dict, ckpt.wandb_id)
        summary["wandb_dir"] = next((lg.run_dir for lg in loggers if hasattr(lg, "run_dir")), None)
        ckpt.wandb_id = next((lg.run_id for lg in loggers if hasattr(lg, "run_id")), None)
        trainer = L.Trainer(
            accelerator=cfg.trainer.accelerator,
            devices=cfg.trainer.devices,
            strategy=cfg.trainer.strategy,
            precision=precision,
            deterministic=deterministic,
            max_steps=cfg.train.max_steps,
            max_epochs=1,
            logger=loggers,
            enable_checkpointing=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            limit_val_batches=0,
            log_every_n_steps=min(cfg.train.log_every, cfg.train.max_steps),
            enable_progress_bar=_progress_bar_wanted(),
            callbacks=[*_callbacks(cfg), ckpt],
            default_root_dir=run_dir,
            use_distributed_sampler=False,
        )
        first = min(ckpt.start_step, cfg.train.max_steps)
        trainer.fit(lit, train_dataloaders=train_loader(batches, first, cfg.train.max_steps))
        ckpt.collect_rank0(lit, trainer)  # ddp_spawn / ddp_notebook: rank 0 state to this process
        if guard.signum is not None:  # stopped early by SIGTERM/SIGINT: interrupted, not completed
            raise Interrupted(guard.signum)
        summary["status"] = "diverged" if lit.diverged_at_step else "completed"
        summary["diverged_at_step"] = lit.diverged_at_step
        if lit.diverged_at_step:
            log.warning(
                "archlab: run diverged at step %d (loss %s); stopped",
                lit.diverged_at_step,
                lit.last_train_loss,
            )
    except BaseException as e:  # record, then let the caller decide (sweeps keep going)
        if guard.signum is None:
            summary["error"] = describe_error(e, run_dir)
            raise
        if ckpt is not None:  # SIGTERM/SIGINT (SIGTERMException is a SystemExit): clean stop
            ckpt.collect_rank0(lit, trainer)
        summary["status"] = "interrupted"
        at = lit.global_step if lit is not None else 0
        kept = ckpt.path if ckpt is not None and ckpt.path.exists() else "none"
        summary["error"] = (
            f"interrupted by {guard.name} at step {at}; "
            f"checkpoint: {kept}; continue with resume=auto"
        )
        log.warning("archlab: %s", summary["error"])
        raise SystemExit(guard.exit_code) from None
    finally:
        guard.restore()
        if lit is not None:
            steps = lit.global_step
            summary.update(
                steps=steps,
                tokens=steps * lit.tokens_per_step,
                val_loss=lit.last_val_loss,
                train_loss=lit.last_train_loss,
                val_loss_at=lit.val_loss_at or None,
                tokens_per_sec=(steps * lit.tokens_per_step / lit._train_time)
                if lit._train_time > 0
                else None,
                startup_sec=round(lit.first_step_wall - t0, 3) if lit.first_step_wall else None,
            )
        if summary.get("train_tokens"):  # epochs of the training split actually seen
            summary["epochs"] = round(summary["tokens"] / summary["train_tokens"], 4)
        summary["elapsed_sec"] = round(time.time() - start, 3)
        _record_measurements(summary, cfg, lit, planned_budget, config_dict)
        for logger in loggers:
            if getattr(logger, "error", None):
                summary["wandb_error"] = logger.error
        for logger in loggers:
            if hasattr(logger, "finish"):
                logger.finish(summary)
            else:
                logger.finalize("success" if summary["status"] == "completed" else "failed")
        write_json(run_dir / "summary.json", summary)
    return summary


def _apply_budget(cfg: ArchlabConfig) -> dict | None:
    from archlab.model.flops import train_flops_per_token
    from archlab.train.budget import apply

    return apply(cfg, train_flops_per_token(cfg.model))


def _record_measurements(summary: dict, cfg, lit, planned_budget, config_dict) -> None:
    """Budget achieved, evaluation noise, long-context reports and provenance (summary.json)."""
    from archlab.runs.provenance import collect, usage
    from archlab.train.budget import achieved

    corpus = ((config_dict or {}).get("data_info") or {}).get("fingerprint")
    summary["provenance"] = {**collect(cfg.trainer.threads, corpus), **usage()}
    if lit is None:
        return
    summary["budget"] = achieved(
        planned_budget,
        cfg.train.max_steps,
        lit.global_step,
        summary["tokens"],
        lit.flops_per_token,
        lit._train_time,
    )
    summary["val_loss_se"] = lit.last_val_se
    summary["val_window_losses"] = lit.last_val_windows or None
    summary["long_context"] = lit.long_context or None


_FIRST_JOB = [True]


def _process_start(now: float) -> float:
    """The process start for the first job in this process (start-up cost), then train()'s."""
    from archlab.startup import process_start_time

    first, _FIRST_JOB[0] = _FIRST_JOB[0], False
    return (process_start_time() or now) if first else now


def _progress_bar_wanted() -> bool:
    return sys.stdout.isatty() and os.environ.get("CI") is None


def _callbacks(cfg: ArchlabConfig) -> list:
    from archlab.train.callbacks import DivergenceStop, Telemetry

    callbacks = []
    if cfg.train.divergence_factor > 0:
        callbacks.append(DivergenceStop(cfg.train.divergence_factor, cfg.train.divergence_patience))
    if cfg.train.telemetry_every > 0:
        callbacks.append(Telemetry(cfg.train.telemetry_every))
    if _progress_bar_wanted():
        from lightning.pytorch.callbacks import RichProgressBar

        callbacks.append(RichProgressBar(leave=True))
    return callbacks
