"""One process per run directory: ``<run dir>/.archlab.lock``.

The lock is an exclusive ``flock`` on that file, which holds the owner's host and pid (for
the refusal message; emptied on release, the file itself stays). The kernel drops a ``flock`` when its process dies however it dies
(SIGKILL, OOM), so a crashed run never leaves the directory stuck: the next start finds the
file unlocked, treats it as stale and takes it over. Only rank 0 locks: ``ddp_spawn`` /
``ddp_notebook`` workers and SLURM / torchrun ranks share their launcher's run directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import time
from pathlib import Path

from archlab.config import ConfigError

log = logging.getLogger("archlab")
LOCK_NAME = ".archlab.lock"
RANK_VARS = ("RANK", "SLURM_PROCID", "LOCAL_RANK")


def is_rank_zero() -> bool:
    """True unless a launcher (torchrun, SLURM) says this process is another rank."""
    return all(os.environ.get(v, "0") in ("", "0") for v in RANK_VARS)


def _owner(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
        return f"pid {info.get('pid')} on {info.get('host')}"
    except (OSError, ValueError):
        return "another process"


def _refusal(run_dir: Path) -> ConfigError:
    return ConfigError(
        f"run directory {run_dir} is in use by {_owner(run_dir / LOCK_NAME)} (lock "
        f"{LOCK_NAME}): wait for it to finish, or choose another hydra.run.dir"
    )


def check_free(run_dir: str | Path) -> None:
    """Refuse (one line) if a live process holds ``run_dir``'s lock; creates nothing."""
    path = Path(run_dir).expanduser() / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # no lock file (or no directory): free
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise _refusal(path.parent) from None
    finally:
        os.close(fd)  # closing drops the probe's own flock


class RunLock:
    """``lock = RunLock(run_dir).acquire()`` … ``lock.release()`` (no-op on other ranks)."""

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / LOCK_NAME
        self.fd: int | None = None

    def acquire(self) -> RunLock:
        if not is_rank_zero():
            return self
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise _refusal(self.path.parent) from None
        except OSError as e:  # a file system without flock (some network mounts): unlocked
            os.close(fd)
            log.warning("archlab: cannot lock %s (%s); running without a lock", self.path, e)
            return self
        info = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}
        os.ftruncate(fd, 0)  # a stale owner's record is replaced
        os.write(fd, json.dumps(info).encode())
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(OSError):  # the file stays (unlinking it would race a
            os.ftruncate(self.fd, 0)  # newcomer locking the old inode): empty = free
        os.close(self.fd)
        self.fd = None
