"""Weights & Biases: exactly one W&B run per Hydra job, always finished.

Lightning's ``WandbLogger`` silently reuses an open ``wandb.run`` and never finishes it, so
under multirun every job would log into the first job's run (lightning-hydra-template#289).
Here the run is created eagerly for this job (group = sweep, job_type = the arm's swept
keys, name = overrides, tags = knob options), and :meth:`ArchlabWandbLogger.finish` always
closes it with the job's exit status and ONE summary update.

W&B runs offline unless configured otherwise. If an online init fails (no network, bad key)
the run falls back to offline with one warning, also when its id is fixed (``WANDB_RUN_ID``
as a sweep agent sets it, or a resumed run): the failed online attempt still holds that id
in the W&B service, so the service is torn down before the offline init.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import time
from pathlib import Path

from lightning.pytorch.loggers import WandbLogger

from archlab.errors import describe, first_line
from archlab.runs import naming

log = logging.getLogger("archlab")

JOB_TYPE_MAX = 64  # W&B's limits for job_type and the run name
RUN_NAME_MAX = 128
# override keys that say where / how a run is logged or stored, never which arm it is
BOOKKEEPING = ("name", "out_dir", "resume", "ckpt", "seed")
BOOKKEEPING_PREFIXES = ("logger.", "logger/", "hydra.", "hydra/", "trainer.threads")
# config groups that are architecture knobs (the tags); size/data/logger/trainer are not
KNOB_GROUPS = ("model/", "loss")


def override_key(override: str) -> str:
    """``model/mlp=gelu`` and ``model.mlp=gelu`` -> ``model.mlp``; ``+x.y=1`` -> ``x.y``."""
    return naming.override_key(override).replace("/", ".")


def is_bookkeeping(key: str) -> bool:
    key = key.replace("/", ".")
    return key in BOOKKEEPING or key.startswith(
        tuple(p.replace("/", ".") for p in BOOKKEEPING_PREFIXES)
    )


def job_type(overrides: list[str], swept_keys: list[str] | None = None) -> str:
    """The arm: the job's overrides of the swept keys (all its experiment overrides when the
    swept keys are unknown), without seed and logger / output settings."""
    swept = {k.replace("/", ".") for k in swept_keys} if swept_keys is not None else None
    return _label(
        [
            o
            for o in overrides
            if not is_bookkeeping(override_key(o)) and (swept is None or override_key(o) in swept)
        ],
        JOB_TYPE_MAX,
    )


def run_name(overrides: list[str]) -> str:
    """The run: its experiment overrides and its seed."""
    keep = [
        o for o in overrides if override_key(o) == "seed" or not is_bookkeeping(override_key(o))
    ]
    return _label(keep, RUN_NAME_MAX)


def _label(overrides: list[str], limit: int) -> str:
    """Comma-joined overrides; past W&B's ``limit``, a prefix plus a hash of the whole, so two
    different labels never become one."""
    text = ",".join(o.lstrip("+~") for o in overrides) or "default"
    if len(text) <= limit:
        return text
    digest = hashlib.sha1(text.encode()).hexdigest()[:10]
    return f"{text[: limit - len(digest) - 1]}~{digest}"


def knob_tags(choices: dict[str, str | None]) -> list[str]:
    """The architecture knob options (``mlp=swiglu``, ``arch=llama``), nothing else."""
    return [
        f"{k.split('/')[-1]}={v}"
        for k, v in sorted(choices.items())
        if k.startswith(KNOB_GROUPS)
        and k != "model/size"
        and v is not None
        and (k, v) != ("model/arch", "none")
    ][:60]


class ArchlabWandbLogger(WandbLogger):
    """W&B faults never kill training: the first exception while logging disables W&B for the
    rest of the run with one warning (``error`` ends up in summary.json as ``wandb_error``);
    metrics.jsonl keeps the full record."""

    error: str | None = None
    val_loss_min: float | None = None

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

    def define_metrics(self) -> None:
        """Every curve against ``tokens`` (comparable across batch sizes and resumes; Lightning
        had put them against ``trainer/global_step``). The summary keeps each metric's last
        value (``val/loss``: the value verdicts use); ``finish`` adds ``val/loss_min``."""
        run = self.experiment
        run.define_metric("tokens")
        run.define_metric("*", step_metric="tokens", step_sync=True, overwrite=True)

    def log_metrics(self, metrics, step=None) -> None:
        if self.error is not None:
            return
        try:
            super().log_metrics(metrics, step)
        except Exception as e:  # noqa: BLE001 - a W&B fault must never stop training
            self._disable(e)
        else:
            value = metrics.get("val/loss")
            if isinstance(value, (int, float)) and not math.isnan(value):
                best = self.val_loss_min
                self.val_loss_min = value if best is None else min(best, value)

    def log_hyperparams(self, params) -> None:
        if self.error is None:
            try:
                super().log_hyperparams(params)
            except Exception as e:  # noqa: BLE001 - a W&B fault must never stop training
                self._disable(e)

    def _disable(self, e: Exception) -> None:
        self.error = describe(e, 300)
        log.warning(
            "W&B failed mid-run (%s): W&B logging is off for the rest of this run; "
            "metrics.jsonl has everything",
            self.error,
        )

    def finish(self, summary: dict, checkpoint: Path | None = None) -> None:
        """Finish the W&B run. After any W&B fault in this run the W&B service is torn down
        too (it may be dead: every later call, and its atexit hook, would fail), so the next
        job of a sweep starts a fresh one."""
        try:
            self._finish(summary, checkpoint)
        except Exception as e:  # noqa: BLE001 - a W&B fault must never stop training
            if self.error is None:  # (a mid-run fault has said so already)
                self.error = describe(e, 300)
                log.warning("W&B finish failed (%s); the local run files are kept", self.error)
        self._experiment = None
        if self.error is not None:
            reset_service()

    def run_summary(self, summary: dict) -> dict:
        """The one summary update: final values under the logged names, plus the run's facts."""
        out = {k: summary[k] for k in SUMMARY_KEYS if summary.get(k) is not None}
        if summary.get("val_loss") is not None:
            out["val/loss"] = summary["val_loss"]
        if summary.get("train_loss") is not None:
            out["train/loss"] = summary["train_loss"]
        if self.val_loss_min is not None:
            out["val/loss_min"] = self.val_loss_min
        return out

    def _finish(self, summary: dict, checkpoint: Path | None) -> None:
        import wandb  # wandb (~1 s): only with logger=wandb

        run = self._experiment
        if run is None:
            return
        if self.error is None:
            run.summary.update(self.run_summary(summary))
            if checkpoint is not None and checkpoint.exists():
                self.log_checkpoint(run, checkpoint, summary)
        if summary.get("status") == "diverged":
            run.tags = (*run.tags, "diverged")
        run.finish(exit_code=0 if summary.get("status") in ("completed", "diverged") else 1)
        if wandb.run is run:  # make sure no later job can inherit it
            wandb.finish()
        self._experiment = None

    @staticmethod
    def log_checkpoint(run, checkpoint: Path, summary: dict) -> None:
        """``logger.log_model=true``: the final checkpoint as a ``model`` artifact."""
        import wandb

        artifact = wandb.Artifact(
            f"model-{run.id}",
            type="model",
            metadata={k: summary.get(k) for k in ("status", "steps", "tokens", "val_loss")},
        )
        artifact.add_file(str(checkpoint), name=checkpoint.name)
        aliases = ["latest"] if summary.get("status") != "completed" else ["latest", "final"]
        run.log_artifact(artifact, aliases=aliases)


SUMMARY_KEYS = (
    "status",
    "steps",
    "tokens",
    "params",
    "tokens_per_sec",
    "diverged_at_step",
    "error",
)


def make_wandb_logger(
    cfg, job, config_dict: dict, run_id: str | None = None, swept_keys: list[str] | None = None
) -> ArchlabWandbLogger:
    """``run_id``: continue that W&B run (resume); offline, the continuation is a second
    ``offline-run-*`` folder with the same id, and ``wandb sync`` of both gives one run."""
    import wandb

    if wandb.run is not None:  # a previous job left a run open (e.g. killed mid-way): close it
        wandb.finish(exit_code=1)
    os.environ.setdefault("WANDB_SILENT", "true")
    kwargs = {
        "project": cfg.logger.project,
        "entity": cfg.logger.entity,
        "group": cfg.logger.group or job.group,
        "job_type": job_type(job.overrides, swept_keys),
        "name": run_name(job.overrides),
        "tags": knob_tags(job.choices),
        "config": config_dict,
        "save_dir": str(job.run_dir),
        "reinit": "create_new",
    }
    if run_id:
        kwargs.update(id=run_id, resume="allow")
    try:
        logger = _init(cfg.logger.mode, cfg.logger.init_timeout, kwargs)
        logger.define_metrics()
    except Exception:
        reset_service()  # whatever failed, the next job starts with a fresh W&B service
        raise
    return logger


def reset_service() -> None:
    """Tear down this process's W&B service (``wandb-core``) and forget it, also when it
    has died (its atexit hook would then print a 30-line traceback at exit); the next
    ``wandb.init`` starts a new one."""
    import wandb

    with contextlib.suppress(Exception):  # a dead service: nothing left to tear down
        wandb.teardown()


def _init(mode: str, timeout: float, kwargs: dict) -> ArchlabWandbLogger:
    t0 = time.monotonic()
    try:
        return _logger(mode, timeout, kwargs)
    except Exception as e:
        if mode != "online":  # e.g. the service died in an earlier job: once more, fresh
            reset_service()
            return _logger(mode, timeout, kwargs)
        log.warning(
            "W&B online init failed after %.1f s (%s); logging offline instead: sync "
            "later with `wandb sync <run_dir>/wandb/offline-run-*`",
            time.monotonic() - t0,
            first_line(e, 200),
        )
    return _offline_init(kwargs)


def _offline_init(kwargs: dict, tries: int = 5) -> ArchlabWandbLogger:
    """The offline run after a failed online init. The failed attempt keeps a fixed run id
    busy in the W&B service ("run ID … is in use") until the service has shut down, which
    can lag under load: tear it down and retry briefly."""
    import wandb

    for attempt in range(tries - 1):
        wandb.teardown()
        try:
            return _offline_logger(kwargs)
        except Exception:  # the service still holds the id: wait, then retry
            time.sleep(1.0 + attempt)
    wandb.teardown()
    return _offline_logger(kwargs)


def _logger(mode: str, timeout: float, kwargs: dict) -> ArchlabWandbLogger:
    import wandb

    logger = ArchlabWandbLogger(mode=mode, settings=wandb.Settings(init_timeout=timeout), **kwargs)
    _ = logger.experiment  # create the run now, not at the first log call
    return logger


def _offline_logger(kwargs: dict) -> ArchlabWandbLogger:
    logger = ArchlabWandbLogger(mode="offline", **kwargs)
    _ = logger.experiment  # create the run now
    return logger
