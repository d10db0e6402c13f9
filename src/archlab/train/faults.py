"""Faults a long sweep meets: preemption signals, unwritable or full disks, config mistakes.

Kept light (no torch / lightning imports at module level): the CLI and the claims runner call
:func:`check_run_environment` during their up-front validation, and ``train`` calls it again.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import multiprocessing
import os
import signal
import time
from pathlib import Path

import yaml

from archlab.config import ConfigError
from archlab.data.sources import SOURCES
from archlab.errors import describe
from archlab.runs.naming import override_key
from archlab.train.distributed import check as check_batch_arithmetic
from archlab.train.memory import check_memory

log = logging.getLogger("archlab")


# ----------------------------------------------------- the training edge (disk, devices, data)


def check_run_environment(cfg, data: bool = False) -> None:
    """What a valid config still needs from this machine: the resume file, devices and
    strategy, a writable ``out_dir`` and (``data=True``: the up-front check) the data source."""
    _check_resume_file(cfg)
    _check_devices(cfg)
    check_writable(cfg.out_dir, "out_dir")
    check_memory(cfg)
    if data:
        SOURCES[cfg.data.source].check(cfg.data)


def _check_resume_file(cfg) -> None:
    r = cfg.resume
    if r is not None and r != "auto" and not Path(r).expanduser().is_file():
        raise ConfigError(
            f"resume={r}: no such checkpoint file; use resume=auto (this run dir's "
            "last checkpoint) or resume=<run dir> or resume=<file.ckpt>"
        )


def _check_devices(cfg) -> None:
    devices = cfg.trainer.devices
    if isinstance(devices, bool) or (isinstance(devices, int) and devices <= 0 and devices != -1):
        raise ConfigError(f"trainer.devices={devices} must be a positive integer, -1 or 'auto'")
    if isinstance(devices, str) and devices != "auto" and not devices.replace(",", "").isdigit():
        raise ConfigError(f"trainer.devices={devices!r} must be a number, 'auto' or a list of ids")
    strategy = str(cfg.trainer.strategy)
    relaunching = strategy.startswith("fsdp") or (
        strategy.startswith("ddp")
        and not strategy.startswith(("ddp_spawn", "ddp_fork", "ddp_notebook"))
    )
    if relaunching and devices != 1:
        raise ConfigError(
            f"trainer.strategy={strategy} re-executes the command line once per "
            "device, which the archlab CLI (Hydra) does not support: use "
            "trainer.strategy=auto (ddp_spawn on GPUs, ddp under srun) or trainer=ddp (CPU)"
        )
    check_batch_arithmetic(cfg)  # global batch vs devices × nodes × micro-batches


def check_writable(path: str, key: str) -> None:
    """One clear line if ``path`` cannot be created / written (nothing is created here)."""
    p = Path(path).expanduser().absolute()
    probe = p
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise ConfigError(f"{key}={path} is not writable: {probe} is a file, not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(
            f"{key}={path} is not writable (no write permission on {probe}): choose another {key}"
        )
    fs = _pseudo_filesystem(probe)
    if fs:
        raise ConfigError(
            f"{key}={path} is not writable: {probe} is on a {fs} pseudo file system "
            f"(kernel state, not storage): choose another {key}"
        )


_PSEUDO_FS = {"proc", "sysfs", "cgroup", "cgroup2", "debugfs", "tracefs", "securityfs",
              "devpts", "configfs", "pstore", "bpf", "efivarfs", "binfmt_misc", "fusectl",
              "mqueue", "hugetlbfs", "autofs", "devtmpfs"}  # fmt: skip


def _pseudo_filesystem(path: Path) -> str | None:
    """The type of the kernel pseudo file system ``path`` is on (/proc, /sys …), else None.
    Root passes every permission check there; writing fails later with a traceback."""
    try:
        with open("/proc/self/mounts") as f:
            mounts = [ln.split()[1:3] for ln in f if len(ln.split()) > 2]
    except OSError:
        return None
    real = os.path.realpath(path)
    if real.split("/")[1:2] in (["proc"], ["sys"]):  # also a tmpfs mounted below them
        return "proc" if real.startswith("/proc") else "sysfs"
    inside = [
        (len(point), fs)
        for point, fs in mounts
        if real == point or real.startswith(point.rstrip("/") + "/")
    ]
    fs = max(inside)[1] if inside else None
    return fs if fs in _PSEUDO_FS else None


# ------------------------------------------------------------------------------ signals


class Interrupted(BaseException):
    """SIGTERM / SIGINT outside the training loop (setup, data loading): stop now."""

    def __init__(self, signum: int):
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum


class SignalGuard:
    """SIGTERM / SIGINT (SLURM preemption, Ctrl+C) → finish the step, checkpoint, stop cleanly.

    While the training loop runs (a trainer is attached) a signal only asks the trainer to stop
    after the current step (``trainer.should_stop``; under DDP the decision is all-reduced every
    step by the checkpoint callback, so every rank stops after the same step). Training then ends
    normally: the final checkpoint is written, and ``train`` records ``status: interrupted`` and
    exits with 128 + signal number (143 / 130). The parent of forked/spawned DDP workers forwards
    the signal to them. Outside the loop, or on a second signal (more than 2 s later: the same
    signal from the scheduler and a forwarding parent counts once), :class:`Interrupted` is raised
    at once.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.signum: int | None = None
        self._first_at = 0.0
        self.trainer = None
        self._old: dict = {}

    def install(self) -> SignalGuard:
        for sig in self.SIGNALS:
            # not the main thread (e.g. a threaded launcher): ValueError, leave it as is
            with contextlib.suppress(ValueError):
                self._old[sig] = signal.signal(sig, self._handler)
        return self

    def restore(self) -> None:
        for sig, old in self._old.items():
            with contextlib.suppress(ValueError):
                signal.signal(sig, old)
        self._old.clear()

    def _handler(self, signum, frame) -> None:
        first = self.signum is None
        if not first and signum == self.signum and time.monotonic() - self._first_at < 2:
            return  # the same signal twice (scheduler + forwarding parent): one request
        if first:
            self.signum, self._first_at = signum, time.monotonic()
        workers = multiprocessing.active_children() if self.trainer is None else []
        if first and workers:  # the parent of DDP workers: they stop after their step
            for p in workers:
                os.kill(p.pid, signum)
            return
        if first and self.trainer is not None:
            log.warning(
                "archlab: received %s: finishing this step, saving a checkpoint, stopping",
                signal.Signals(signum).name,
            )
            # Lightning's own SIGTERM flag would raise mid-teardown in DDP workers: stop normally
            self.trainer._signal_connector.received_sigterm = False
            return  # Checkpointing stops the trainer at the end of the optimizer step
        raise Interrupted(self.signum)

    @property
    def name(self) -> str:
        return signal.Signals(self.signum or signal.SIGTERM).name

    @property
    def exit_code(self) -> int:
        return 128 + (self.signum or signal.SIGTERM)


# ------------------------------------------------------------------------------ errors


def describe_error(e: BaseException, run_dir: Path) -> str:
    """One line for summary.json / the console."""
    if isinstance(e, OSError) and e.errno == errno.ENOSPC:
        ckpt = Path(run_dir) / "checkpoints" / "last.ckpt"
        kept = ckpt if ckpt.exists() else "none"
        return (
            f"disk full (ENOSPC) writing {e.filename or 'the run record'}: run stopped; "
            f"last good checkpoint: {kept}"
        )
    return describe(e, 2000)


# ------------------------------------------------------------------------------ resume CLI


_NO_RESUME = ("auto", "null", "", "None", "none")


def resume_args(args: list[str], overrides: list[str], multirun: bool) -> list[str]:
    """``archlab train resume=<run dir | file.ckpt> [more overrides]`` → that run's overrides +
    ``hydra.run.dir=<run dir>`` + ``resume=auto`` (or the explicit checkpoint file)."""
    given = [o for o in overrides if override_key(o) == "resume"]
    if not given:
        return args
    value = given[-1].split("=", 1)[1]
    if multirun and value not in _NO_RESUME:
        raise ConfigError(
            f"resume={value}: a sweep resumes with resume=auto (re-run the same "
            "sweep command: finished jobs are skipped, interrupted ones continue)"
        )
    if multirun or value in _NO_RESUME:
        return args
    target = _resume_target(value)
    if target is None:
        return args  # a checkpoint outside a run dir: continue it in this run's dir
    run_dir, ckpt = target
    saved_file = run_dir / ".hydra" / "overrides.yaml"
    if not saved_file.is_file():
        raise ConfigError(
            f"resume={value}: {run_dir} is not an archlab run directory (no .hydra/overrides.yaml)"
        )
    saved = [
        o
        for o in (yaml.safe_load(saved_file.read_text()) or [])
        if override_key(o) not in ("resume", "hydra.run.dir")
    ]
    rest = [a for a in args if a not in given]
    return [*saved, *rest, f"hydra.run.dir={run_dir.absolute()}", f"resume={ckpt}"]


def _resume_target(value: str) -> tuple[Path, str] | None:
    """(run dir, checkpoint: a file or "auto") for ``resume=<value>``; None for a checkpoint
    file outside a run dir. A bad file is refused in one line before any output dir exists."""
    path = Path(value).expanduser()
    if path.is_dir():
        return path, "auto"
    if not path.is_file():
        raise ConfigError(f"resume={value}: no such run directory or checkpoint file")
    from archlab.train.checkpoint import load  # torch + Lightning: only when resuming

    try:  # a truncated / foreign / code-carrying file: one line, before any output dir
        load(path)
    except ConfigError as e:
        raise ConfigError(f"resume={value}: {e}") from None
    run_dir = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    if not (run_dir / ".hydra" / "overrides.yaml").is_file():
        return None
    return run_dir, str(path.absolute())
