"""Safe checkpoints and exact resume.

Format (``<run_dir>/checkpoints/last.ckpt``, previous one kept as ``prev.ckpt``): a plain dict
that loads with ``torch.load(path, weights_only=True)`` — tensors, numbers, strings, lists and
dicts only, no pickled code:

    format          "archlab-checkpoint"      version   1
    global_step     optimizer steps done (the next step to run is global_step + 1)
    state_dict      the LightningModule's state dict (``model.``-prefixed keys, Lightning layout)
    config          the resolved run config as a plain dict (``config["model"]`` builds the model)
    optimizer_states, lr_schedulers   lists of torch state dicts (as Lightning's .ckpt)
    archlab         {"module": LitLM counters, "callbacks": {class name: state}, "rng": torch /
                     numpy / python RNG states, "wandb_id": the W&B run id, "saved_at": unix time}

Writes are atomic: the new file is written to a temp file in the same directory, fsynced, the
old ``last.ckpt`` becomes ``prev.ckpt`` and the temp file becomes ``last.ckpt`` (``os.replace``),
so a crash mid-write never leaves a corrupt ``last.ckpt``; ``resume=auto`` falls back to
``prev.ckpt`` (with one warning) if ``last.ckpt`` is missing or unreadable (truncated, empty),
and the temp files of a killed writer are removed on the next start (:func:`remove_stale_temps`).

Resume is exact on CPU: the batch of step i is a pure function of (seed, i), so the data loader
restarts at the restored step; optimizer, LR schedule, RNG states, the module's counters (train
clock, interval-loss buffer, last losses) and callback states (divergence detector) are restored;
``metrics.jsonl`` rows logged after the checkpoint (before the crash) are dropped, so the resumed
file equals the uninterrupted run's except for wall-clock columns (``time``, ``tokens_per_sec``).
"""

from __future__ import annotations

import errno
import json
import logging
import multiprocessing
import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.exceptions import SIGTERMException

from archlab.config import ConfigError
from archlab.errors import first_line
from archlab.numerics import NUMERICS_VERSION
from archlab.train.inject import fault_point

log = logging.getLogger("archlab")

FORMAT, VERSION = "archlab-checkpoint", 1
CKPT_DIR = "checkpoints"
# config keys that may differ between a checkpoint and the run resuming it (operational only)
RESUME_MAY_CHANGE = (
    "logger",
    "trainer",
    "resume",
    "out_dir",
    "name",
    "data.cache_dir",
    "paths",
    "train.ckpt_every",
    "train.max_steps",
    "train.log_every",
    "data_info",
)


def ckpt_every(cfg) -> int:
    """Steps between checkpoints (``train.ckpt_every``; None: every validation; 0: never)."""
    return cfg.train.val_every if cfg.train.ckpt_every is None else cfg.train.ckpt_every


class DiskFullError(RuntimeError):
    """The disk filled up while writing run state: the run stops, the last good checkpoint stays."""


def is_disk_full(e: BaseException | None) -> bool:
    """ENOSPC anywhere in the exception's chain (torch.save raises a RuntimeError whose
    context is the OSError)."""
    seen = 0
    while e is not None and seen < 10:
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            return True
        e, seen = e.__cause__ or e.__context__, seen + 1
    return False


# ----------------------------------------------------------------------------- file I/O


def _write_atomic(obj: dict, path: Path) -> None:
    """torch.save to a temp file, fsync, keep the old file as prev.ckpt, os.replace."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    step = int(obj.get("global_step", -1))
    fault_point("before-ckpt", step)
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        fault_point("during-ckpt", step)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if path.exists():
        os.replace(path, path.with_name("prev.ckpt"))
    os.replace(tmp, path)
    fault_point("after-ckpt", step)
    try:  # make the renames durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


_LAST_LOADED: dict = {}  # (path, size, mtime) → dict: the up-front check and train load once


def load(path: str | Path) -> dict:
    """Load an archlab checkpoint with ``weights_only=True``; ConfigError (one line) if bad."""
    path = Path(path).expanduser()
    try:
        st = path.stat()
        key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    except OSError:
        key = None
    if key is not None and key in _LAST_LOADED:
        return _LAST_LOADED[key]
    ckpt = _load_checked(path)
    _LAST_LOADED.clear()
    if key is not None:
        _LAST_LOADED[key] = ckpt
    return ckpt


def forget_loaded() -> None:
    """Drop the cached checkpoint (its tensors) once restored."""
    _LAST_LOADED.clear()


def _load_checked(path: Path) -> dict:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ConfigError(f"checkpoint {path} does not exist") from None
    except Exception as e:
        reason = first_line(e, 160)
        raise ConfigError(
            f"checkpoint {path} cannot be loaded safely (truncated, corrupt, or not "
            f"a plain-data checkpoint: {reason})"
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ConfigError(
            f"checkpoint {path} is not an archlab checkpoint (no "
            f"format={FORMAT!r} key): archlab resumes only its own checkpoints"
        )
    return ckpt


def find_resume(run_dir: Path, resume: str | None) -> Path | None:
    """The checkpoint to resume from, or None to start fresh. ``auto``: ``last.ckpt``, or
    ``prev.ckpt`` (one warning) when ``last.ckpt`` does not load; neither loads: refused."""
    if resume is None:
        return None
    if resume != "auto":
        return Path(resume).expanduser()
    d = Path(run_dir) / CKPT_DIR
    candidates = [d / n for n in ("last.ckpt", "prev.ckpt") if (d / n).is_file()]
    errors = []
    for path in candidates:
        try:
            load(path)
        except ConfigError as e:
            errors.append(str(e))
            continue
        if errors:
            log.warning("archlab: %s; resuming from %s instead", errors[0], path.name)
        return path
    if errors:
        raise ConfigError(f"resume=auto: no loadable checkpoint in {d}: {errors[0]}")
    return None


def remove_stale_temps(run_dir: Path) -> list[Path]:
    """Delete temp files a killed writer left (``.last.ckpt.tmp<pid>``, ``.metrics.jsonl.tmp…``).
    Call it holding the run directory's lock: then no live writer owns them."""
    run_dir = Path(run_dir)
    stale = [*run_dir.glob(f"{CKPT_DIR}/.*.tmp*"), *run_dir.glob(".metrics.jsonl.tmp*")]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


# ------------------------------------------------------------------------------- state


def _flat(d: Any, prefix: str = "") -> dict:
    if not isinstance(d, dict):
        return {prefix: d}
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}."))
    return out or {prefix: {}}


def config_diff(saved: dict, now: dict) -> list[str]:
    a, b = _flat(saved), _flat(now)
    diffs = []
    for key in sorted(set(a) | set(b)):
        k = key.rstrip(".")
        if any(k == m or k.startswith(m + ".") for m in RESUME_MAY_CHANGE):
            continue
        if a.get(key) != b.get(key):
            diffs.append(f"{k}={a.get(key)!r} in the checkpoint but {b.get(key)!r} now")
    return diffs


def rng_state() -> dict:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": [list(random.getstate()[1]), random.getstate()[0], random.getstate()[2]],
    }


def set_rng_state(s: dict) -> None:
    torch.set_rng_state(s["torch"])
    n = s["numpy"]
    np.random.set_state(
        (
            "MT19937",
            n["keys"].numpy().astype(np.uint32),
            n["pos"],
            n["has_gauss"],
            n["cached_gaussian"],
        )
    )
    internal, version, gauss = s["python"]
    random.setstate((version, tuple(internal), gauss))


# the LitLM attributes that make a resumed run continue exactly (see train/module.py)
_MODULE_FIELDS = (
    "_train_time",
    "_train_time_logged",
    "last_val_loss",
    "last_train_loss",
    "diverged_at_step",
)


def module_state(lit) -> dict:
    state = {k: getattr(lit, k) for k in _MODULE_FIELDS}
    state["_interval_losses"] = [t.detach().cpu() for t in lit._interval_losses]
    state["_parts"] = {k: v.detach().cpu() for k, v in lit._parts.items()}
    state["_grad_norm"] = None if lit._grad_norm is None else lit._grad_norm.detach().cpu()
    state["val_loss_at"] = dict(getattr(lit, "val_loss_at", {}) or {})
    state["last_val_se"] = getattr(lit, "last_val_se", None)
    state["last_val_windows"] = list(getattr(lit, "last_val_windows", []) or [])
    state["long_context"] = dict(getattr(lit, "long_context", {}) or {})
    return state


def load_module_state(lit, state: dict) -> None:
    for k in _MODULE_FIELDS:
        setattr(lit, k, state[k])
    lit._interval_losses = list(state["_interval_losses"])
    lit._parts = dict(state["_parts"])
    lit._grad_norm = state["_grad_norm"]
    if "val_loss_at" in state:
        lit.val_loss_at = dict(state["val_loss_at"])
    lit.last_val_se = state.get("last_val_se")  # absent in checkpoints of numerics 1
    lit.last_val_windows = list(state.get("last_val_windows") or [])
    lit.long_context = dict(state.get("long_context") or {})
    lit._clock = None


def truncate_metrics(run_dir: Path, step: int) -> int:
    """Drop metrics.jsonl rows with step > ``step`` (logged after the checkpoint); # dropped."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return 0
    lines = path.read_text().splitlines()
    keep = []
    for line in lines:
        try:
            if json.loads(line).get("step", 0) <= step:
                keep.append(line)
        except ValueError:  # a half-written last line from a hard kill
            pass
    if len(keep) != len(lines):
        tmp = path.with_name(f".metrics.jsonl.tmp{os.getpid()}")
        tmp.write_text("".join(ln + "\n" for ln in keep))
        os.replace(tmp, path)
    return len(lines) - len(keep)


# ---------------------------------------------------------------------------- the callback


def check_numerics(ckpt: dict, path) -> None:
    """A run never continues across a numerics change (archlab/numerics.py): one line."""
    saved = ckpt.get("numerics", 1)  # v1 checkpoints predate the field
    if saved != NUMERICS_VERSION:
        raise ConfigError(
            f"resume: checkpoint {path} was trained with numerics version "
            f"{saved}, this code is version {NUMERICS_VERSION} (archlab/numerics.py): "
            "start a new run (its weights still load for generate / evaluation)"
        )


class Checkpointing(Callback):
    """Periodic + final + on-signal checkpoints (rank 0), and the restore of a resumed run.

    Periodic checkpoints are written at the start of the step after a multiple of ``every`` (the
    state then is exactly "step k done": logged, validated), the final one at the end of
    training, and one when Lightning stops on SIGTERM/SIGINT (see :mod:`archlab.train.faults`).
    """

    def __init__(
        self, cfg, run_dir: Path, config_dict: dict, resume_from: Path | None = None, guard=None
    ):
        self.cfg, self.run_dir, self.config_dict = cfg, Path(run_dir), config_dict
        self.guard = guard  # faults.SignalGuard: signals become a clean stop while training
        self.every = ckpt_every(cfg)
        self.path = self.run_dir / CKPT_DIR / "last.ckpt"
        self.ckpt: dict | None = None
        self.start_step = 0
        self.wandb_id: str | None = None
        self.last_saved_step: int | None = None
        self.saved: list[int] = []
        if resume_from is not None:
            self.ckpt = load(resume_from)
            check_numerics(self.ckpt, resume_from)
            diffs = config_diff(self.ckpt.get("config", {}), config_dict)
            if diffs:
                raise ConfigError(
                    f"resume: checkpoint {resume_from} belongs to another config: "
                    f"{diffs[0]}" + (f" (+{len(diffs) - 1} more)" if len(diffs) > 1 else "")
                )
            self.start_step = int(self.ckpt["global_step"])
            self.last_saved_step = self.start_step
            self.wandb_id = self.ckpt["archlab"].get("wandb_id")
            self.resumed_from = Path(resume_from)

    # -- restore ------------------------------------------------------------------------
    def restore_module(self, lit) -> None:
        """Weights and module counters (before fit)."""
        if self.ckpt is None:
            return
        lit.load_state_dict(self.ckpt["state_dict"])
        load_module_state(lit, self.ckpt["archlab"]["module"])

    def on_train_start(self, trainer, pl_module) -> None:
        if self.guard is not None:
            self.guard.trainer = trainer
        if self.ckpt is None:
            return
        ck, k = self.ckpt, self.start_step
        for opt, state in zip(trainer.optimizers, ck["optimizer_states"]):
            opt.load_state_dict(state)
        for cfg, state in zip(trainer.lr_scheduler_configs, ck["lr_schedulers"]):
            cfg.scheduler.load_state_dict(state)
        loop = trainer.fit_loop.epoch_loop
        step = loop.automatic_optimization.optim_progress.optimizer.step
        step.total.ready = step.total.completed = k
        loop._batches_that_stepped = k
        states = ck["archlab"].get("callbacks", {})
        for cb in trainer.callbacks:
            if type(cb).__name__ in states:
                cb.load_state_dict(states[type(cb).__name__])
        set_rng_state(ck["archlab"]["rng"])
        self.ckpt = None  # free the memory
        forget_loaded()

    # -- save ---------------------------------------------------------------------------
    def state(self, trainer, pl_module) -> dict:
        callbacks = {}
        for cb in trainer.callbacks:
            if cb is not self and (sd := cb.state_dict()):
                callbacks[type(cb).__name__] = sd
        return {
            "format": FORMAT,
            "version": VERSION,
            "numerics": NUMERICS_VERSION,
            "global_step": int(trainer.global_step),
            "state_dict": {k: v.detach().cpu() for k, v in pl_module.state_dict().items()},
            "config": self.config_dict,
            "optimizer_states": [opt.state_dict() for opt in trainer.optimizers],
            "lr_schedulers": [c.scheduler.state_dict() for c in trainer.lr_scheduler_configs],
            "archlab": {
                "module": module_state(pl_module),
                "callbacks": callbacks,
                "rng": rng_state(),
                "wandb_id": self.wandb_id,
                "saved_at": time.time(),
            },
        }

    def save(self, trainer, pl_module) -> None:
        step = int(trainer.global_step)
        if self.every == 0 or step == self.last_saved_step or not trainer.is_global_zero:
            return
        try:
            _write_atomic(self.state(trainer, pl_module), self.path)
        except (OSError, RuntimeError) as e:  # torch.save wraps ENOSPC in a RuntimeError
            if is_disk_full(e):
                kept = self.path if self.path.exists() else "none"
                raise DiskFullError(
                    f"disk full (ENOSPC) writing checkpoint {self.path} at step "
                    f"{step}: run stopped; last good checkpoint kept: {kept}"
                ) from None
            raise
        self.last_saved_step = step
        self.saved.append(step)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        step = trainer.global_step
        if self.every and step and step % self.every == 0:
            self.save(trainer, pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # after a signal, stop at the end of an optimizer step (not between micro-batches),
        # every rank after the same one
        if not pl_module.step_ends(batch_idx):
            return
        fault_point("step", int(trainer.global_step))  # ARCHLAB_FAULT (train/inject.py)
        if self.guard is None:
            return
        stop = self.guard.signum is not None
        if trainer.world_size > 1:
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        if stop:
            trainer.should_stop = True

    def on_train_end(self, trainer, pl_module) -> None:
        self.save(trainer, pl_module)
        self._handoff(trainer, pl_module)
        if self.guard is not None:
            self.guard.trainer = None

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        # Lightning raises SIGTERMException after a complete step: the state is consistent
        if self.guard is not None:
            self.guard.trainer = None
        if isinstance(exception, SIGTERMException):
            self.save(trainer, pl_module)
            self._handoff(trainer, pl_module)
            if _in_worker_process(trainer):  # DDP worker: tell the parent by a non-zero exit
                os._exit(self.guard.exit_code if self.guard is not None else 143)

    # -- multi-process (ddp_spawn / ddp_notebook): rank 0's counters back to the parent --------
    @property
    def _handoff_path(self) -> Path:
        return self.run_dir / CKPT_DIR / ".rank0-state.pt"

    def _handoff(self, trainer, pl_module) -> None:
        if _in_worker_process(trainer) and trainer.is_global_zero:
            self._handoff_path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(
                {
                    "global_step": int(trainer.global_step),
                    "module": module_state(pl_module),
                    "signum": self.guard.signum if self.guard is not None else None,
                },
                self._handoff_path,
            )

    def collect_rank0(self, lit, trainer) -> None:
        """In the parent process after fit: rank 0's step and counters (summary.json needs them)."""
        if not self._handoff_path.exists() or trainer is None:
            return
        state = torch.load(self._handoff_path, weights_only=True)
        self._handoff_path.unlink()
        load_module_state(lit, state["module"])
        if state.get("signum") and self.guard is not None and self.guard.signum is None:
            self.guard.signum = state["signum"]  # a worker was signalled directly
        if lit._trainer is None:  # the launcher leaves the parent's module detached
            lit.trainer = trainer
        progress = trainer.fit_loop.epoch_loop.automatic_optimization.optim_progress
        progress.optimizer.step.total.completed = state["global_step"]


def _in_worker_process(trainer) -> bool:
    """True in a worker started by Lightning's multiprocessing launcher (fork / spawn)."""
    return trainer.world_size > 1 and multiprocessing.parent_process() is not None
