"""The loggers of one job: ``metrics.jsonl`` always, plus W&B / CSV / TensorBoard by
``logger.kinds``. Each logger writes into the job's own run directory, so a sweep folder
holds every run side by side (``tensorboard --logdir outputs/sweeps/<name>``)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.loggers.logger import Logger, rank_zero_experiment
from lightning.pytorch.utilities import rank_zero_only

from archlab.errors import describe
from archlab.runs.record import plain

log = logging.getLogger("archlab")


class JsonlLogger(Logger):
    """A Lightning logger writing ``metrics.jsonl``: one line per ``log_metrics`` call."""

    def __init__(self, run_dir: Path):
        super().__init__()
        self.path = Path(run_dir) / "metrics.jsonl"
        self._file = None

    @property
    def name(self) -> str:
        return "jsonl"

    @property
    def version(self) -> None:
        return None  # one run per directory (and no "v_num" in the progress bar)

    @property
    @rank_zero_experiment
    def experiment(self):
        if self._file is None:
            self._file = open(self.path, "a", buffering=1)  # noqa: SIM115 (closed in finalize)
        return self._file

    @rank_zero_only
    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        row = {"step": step, **{k: plain(v) for k, v in metrics.items()}}
        self.experiment.write(json.dumps(row) + "\n")

    @rank_zero_only
    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass  # config.yaml holds the config

    @rank_zero_only
    def finalize(self, status: str) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class ArchlabTensorBoardLogger(TensorBoardLogger):
    """TensorBoard with one point per (tag, step) and the run's config in the HParams tab.

    A train row and a val row of the same step both carry ``tokens``/``time``/``flops``;
    TensorBoard would show each twice, so a tag already written at this step is skipped.
    The config goes to the HParams tab once, at the start, with ``val/loss`` as its metric:
    TensorBoard reads the metric's value from the run's last ``val/loss`` point, the final
    validation loss, so the tab compares the arms of a sweep by the value verdicts use.
    """

    def __init__(self, run_dir: Path):
        super().__init__(save_dir=run_dir, name="tensorboard", version="", default_hp_metric=False)
        self._step: int | None = None
        self._tags_at_step: set[str] = set()

    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        if step != self._step:
            self._step, self._tags_at_step = step, set()
        fresh = {k: v for k, v in metrics.items() if k not in self._tags_at_step}
        self._tags_at_step.update(fresh)
        if fresh:
            super().log_metrics(fresh, step)

    def log_hyperparams(self, params, metrics=None) -> None:
        """Lightning's call (the module's hparams) is ignored: :meth:`log_config` logs the
        whole resolved config instead."""

    def log_config(self, config: dict) -> None:
        from torch.utils.tensorboard.summary import hparams  # imports tensorboard

        flat = {k: _hparam_value(v) for k, v in _flatten(config).items()}
        writer = self.experiment.file_writer
        for summary in hparams(flat, {"val/loss": 0.0}):  # experiment, session start, end
            writer.add_summary(summary)


def _flatten(config: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _hparam_value(value):
    """HParams takes numbers, strings and booleans: lists and null become their YAML text."""
    if isinstance(value, (bool, int, float, str)):
        return value
    return "null" if value is None else str(value)


def make_loggers(cfg, job, config_dict: dict, wandb_id=None, swept_keys=None):
    """The job's loggers, and why W&B is off for this job (None: on, or not asked for). W&B
    failing to start never stops a job: one warning, and the other loggers carry on."""
    loggers, wandb_error = [JsonlLogger(job.run_dir)], None
    if "wandb" in cfg.logger.kinds and cfg.logger.mode != "disabled":
        from archlab.train.wandb import make_wandb_logger  # wandb: only when logging to it

        try:
            loggers.append(
                make_wandb_logger(cfg, job, config_dict, run_id=wandb_id, swept_keys=swept_keys)
            )
        except Exception as e:  # noqa: BLE001 - a W&B fault must never stop training
            wandb_error = describe(e, 300)
            log.warning(
                "W&B could not start (%s): W&B is off for this job; metrics.jsonl and "
                "summary.json have everything",
                wandb_error,
            )
    if "csv" in cfg.logger.kinds:
        from lightning.pytorch.loggers import CSVLogger  # each logger only when chosen

        loggers.append(CSVLogger(save_dir=job.run_dir, name="csv", version=""))
    if "tensorboard" in cfg.logger.kinds:
        tb = ArchlabTensorBoardLogger(job.run_dir)
        tb.log_config({k: v for k, v in config_dict.items() if k != "data_info"})
        loggers.append(tb)
    return loggers, wandb_error


def finish_loggers(loggers: list, summary: dict, checkpoint: Path | None = None) -> None:
    """Close every logger with the run's status; W&B also gets the summary (and, with
    ``logger.log_model=true``, the checkpoint)."""
    for logger in loggers:
        if hasattr(logger, "finish"):
            logger.finish(summary, checkpoint)
        else:
            logger.finalize("success" if summary["status"] == "completed" else "failed")
