"""Weights & Biases: exactly one W&B run per Hydra job, always finished.

Lightning's ``WandbLogger`` silently reuses an open ``wandb.run`` and never finishes it, so
under multirun every job would log into the first job's run (lightning-hydra-template#289).
Here the run is created eagerly for this job (group = sweep, job_type = arm, name =
overrides, tags = knob options), and :meth:`ArchlabWandbLogger.finish` always closes it with
the job's exit status. W&B runs offline unless configured otherwise; if an online init fails
(no network, bad key) the run falls back to offline with one warning instead of blocking.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from lightning.pytorch.loggers import WandbLogger

from archlab.errors import describe, first_line

log = logging.getLogger("archlab")


class ArchlabWandbLogger(WandbLogger):
    """W&B faults never kill training: the first exception while logging disables W&B for the
    rest of the run with one warning (``error`` ends up in summary.json as ``wandb_error``);
    metrics.jsonl keeps the full record."""

    error: str | None = None

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        # Lightning always passes anonymous=None, which wandb warns about on every init
        self._wandb_init.pop("anonymous", None)

    @property
    def run_dir(self) -> str:
        return str(Path(self.experiment.dir).parent)

    @property
    def run_id(self) -> str:
        return self.experiment.id

    def log_metrics(self, metrics, step=None) -> None:
        if self.error is not None:
            return
        try:
            super().log_metrics(metrics, step)
        except Exception as e:
            self._disable(e)

    def log_hyperparams(self, params) -> None:
        if self.error is None:
            try:
                super().log_hyperparams(params)
            except Exception as e:
                self._disable(e)

    def _disable(self, e: Exception) -> None:
        self.error = describe(e, 300)
        log.warning(
            "W&B failed mid-run (%s): W&B logging is off for the rest of this run; "
            "metrics.jsonl has everything",
            self.error,
        )

    def finish(self, summary: dict) -> None:
        try:
            self._finish(summary)
        except Exception as e:
            log.warning(
                "W&B finish failed (%s); the local run files are kept",
                first_line(e, 200),
            )
        self._experiment = None

    def _finish(self, summary: dict) -> None:
        import wandb  # wandb (~1 s): only with logger=wandb

        run = self._experiment
        if run is None:
            return
        for key in (
            "status",
            "steps",
            "tokens",
            "val_loss",
            "train_loss",
            "params",
            "tokens_per_sec",
            "diverged_at_step",
            "error",
        ):
            if summary.get(key) is not None:
                run.summary[key] = summary[key]
        if summary.get("status") == "diverged":
            run.tags = (*run.tags, "diverged")
        run.finish(exit_code=0 if summary.get("status") in ("completed", "diverged") else 1)
        if wandb.run is run:  # make sure no later job can inherit it
            wandb.finish()
        self._experiment = None


def make_wandb_logger(cfg, job, config_dict: dict, run_id: str | None = None) -> ArchlabWandbLogger:
    """``run_id``: continue that W&B run (resume); offline, the continuation is a second
    ``offline-run-*`` folder with the same id, and ``wandb sync`` of both gives one run."""
    import wandb  # wandb (~1 s): only with logger=wandb

    if wandb.run is not None:  # a previous job left a run open (e.g. killed mid-way): close it
        wandb.finish(exit_code=1)
    os.environ.setdefault("WANDB_SILENT", "true")
    kwargs = dict(
        project=cfg.logger.project,
        entity=cfg.logger.entity,
        group=cfg.logger.group or job.group,
        job_type=job.arm[:64],
        name=job.name[:128],
        tags=job.tags,
        config=config_dict,
        save_dir=str(job.run_dir),
        reinit="create_new",
    )
    if run_id:
        kwargs.update(id=run_id, resume="allow")
    mode = cfg.logger.mode
    t0 = time.monotonic()
    try:
        logger = ArchlabWandbLogger(
            mode=mode, settings=wandb.Settings(init_timeout=cfg.logger.init_timeout), **kwargs
        )
        logger.experiment  # noqa: B018 (the property starts the W&B run: fail here, not later)
    except Exception as e:
        if mode != "online":
            raise
        log.warning(
            "W&B online init failed after %.1f s (%s); logging offline instead: sync "
            "later with `wandb sync <run_dir>/wandb/offline-run-*`",
            time.monotonic() - t0,
            first_line(e, 200),
        )
        logger = ArchlabWandbLogger(mode="offline", **kwargs)
        logger.experiment  # noqa: B018 (starts the run)
    return logger
