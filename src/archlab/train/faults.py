"""Faults a long sweep meets: preemption signals, unwritable or full disks, config mistakes.

Kept light (no torch / lightning imports at module level): ``config.validate`` calls
:func:`validate_reliability` during the CLI's up-front validation.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
from pathlib import Path

from archlab.config import ConfigError

log = logging.getLogger("archlab")


# ----------------------------------------------------------------- config checks (prevalidate)


def ckpt_every(cfg) -> int:
    return cfg.train.val_every if cfg.train.ckpt_every is None else cfg.train.ckpt_every


def validate_reliability(cfg) -> None:
    """Checks for the reliability keys (called from config.validate)."""
    if cfg.train.ckpt_every is not None and cfg.train.ckpt_every < 0:
        raise ConfigError(
            f"train.ckpt_every={cfg.train.ckpt_every} must be >= 0 (0: no checkpoints)"
        )
    r = cfg.resume
    if r is not None and r != "auto" and not Path(r).expanduser().is_file():
        raise ConfigError(
            f"resume={r}: no such checkpoint file; use resume=auto (this run dir's "
            "last checkpoint) or resume=<run dir> or resume=<file.ckpt>"
        )
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
    from archlab.train.distributed import check

    check(cfg)  # global batch vs devices × nodes × micro-batches
    check_writable(cfg.out_dir, "out_dir")


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
            try:
                self._old[sig] = signal.signal(sig, self._handler)
            except ValueError:  # not the main thread (e.g. a threaded launcher): leave as is
                pass
        return self

    def restore(self) -> None:
        for sig, old in self._old.items():
            try:
                signal.signal(sig, old)
            except ValueError:
                pass
        self._old.clear()

    def _handler(self, signum, frame) -> None:
        import multiprocessing
        import time

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
    return f"{type(e).__name__}: {e}".splitlines()[0][:2000]


# ------------------------------------------------------------------------------ resume CLI


def resume_args(args: list[str], overrides: list[str], multirun: bool) -> list[str]:
    """``archlab train resume=<run dir | file.ckpt> [more overrides]`` → that run's overrides +
    ``hydra.run.dir=<run dir>`` + ``resume=auto`` (or the explicit checkpoint file)."""
    given = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") == "resume"]
    if not given:
        return args
    value = given[-1].split("=", 1)[1]
    if value in ("auto", "null", "", "None", "none") or multirun:
        if multirun and value not in ("auto", "null", "", "None", "none"):
            raise ConfigError(
                f"resume={value}: a sweep resumes with resume=auto (re-run the same "
                "sweep command: finished jobs are skipped, interrupted ones continue)"
            )
        return args
    path = Path(value).expanduser()
    if path.is_file():
        from archlab.train.checkpoint import load

        try:  # a truncated / foreign / code-carrying file: one line, before any output dir
            load(path)
        except ConfigError as e:
            raise ConfigError(f"resume={value}: {e}") from None
        run_dir = path.parent.parent if path.parent.name == "checkpoints" else path.parent
        ckpt = str(path.absolute())
        if not (run_dir / ".hydra" / "overrides.yaml").is_file():
            return args  # a checkpoint outside a run dir: continue it in this run's dir
    elif path.is_dir():
        run_dir, ckpt = path, "auto"
    else:
        raise ConfigError(f"resume={value}: no such run directory or checkpoint file")
    saved_file = run_dir / ".hydra" / "overrides.yaml"
    if not saved_file.is_file():
        raise ConfigError(
            f"resume={value}: {run_dir} is not an archlab run directory (no .hydra/overrides.yaml)"
        )
    import yaml

    saved = [
        o
        for o in (yaml.safe_load(saved_file.read_text()) or [])
        if o.split("=", 1)[0].lstrip("+~") not in ("resume", "hydra.run.dir")
    ]
    rest = [a for a in args if a not in given]
    return [*saved, *rest, f"hydra.run.dir={run_dir.absolute()}", f"resume={ckpt}"]
