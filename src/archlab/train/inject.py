"""Deterministic fault injection for tests: ``ARCHLAB_FAULT=<signal>@<step>:<phase>[:<target>]``.

An environment variable, not a config key: a config key would enter job names, the run
record and W&B. The process sends ``signal`` (``SIGKILL``, ``SIGTERM``, ``SIGINT`` …) when it
reaches ``phase`` at optimizer step ``step``:

* ``step``          at the end of step ``step``'s batch: the optimizer has stepped, the step's
                    metrics row is not yet written (rows of earlier steps are);
* ``before-ckpt``   the checkpoint of step ``step`` is about to be written;
* ``during-ckpt``   its temp file is fully written but not yet renamed to ``last.ckpt``;
* ``after-ckpt``    it has been renamed into place.

``target`` is ``self`` (the default: this process) or ``wandb-core`` (this process's W&B
service: ``SIGKILL@3:step:wandb-core`` replays "W&B's service died mid-run").

``ARCHLAB_FAULT=SIGKILL@16:during-ckpt`` replays "killed while writing the step-16 checkpoint"
at exactly that point, however loaded the machine is (the timing-based kills it replaces were
coin tosses). Several faults: separate them with commas. Each fault fires once per process, so
in a sweep only the first job that reaches it is hit. Unset: every call is a dict lookup.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

ENV = "ARCHLAB_FAULT"
PHASES = ("step", "before-ckpt", "during-ckpt", "after-ckpt")
TARGETS = ("self", "wandb-core")
_FIRED: set[str] = set()  # faults already injected in this process


def _parse(spec: str) -> list[tuple[str, int, int, str, str]]:
    faults = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        try:
            sig, rest = item.split("@", 1)
            step, phase, *target = (s.strip() for s in rest.split(":"))
            signum = int(signal.Signals[sig.strip().upper()])
            faults.append((item, signum, int(step), phase, target[0] if target else "self"))
        except (ValueError, KeyError, IndexError):
            raise ValueError(
                f"{ENV}={spec!r}: expected <SIGNAL>@<step>:<phase>[:<target>]"
            ) from None
        if phase not in PHASES or len(target) > 1 or faults[-1][4] not in TARGETS:
            raise ValueError(
                f"{ENV}={item!r}: phase must be one of {', '.join(PHASES)} and the target "
                f"one of {', '.join(TARGETS)}"
            )
    return faults


def fault_point(phase: str, step: int) -> None:
    """Send the signal if ``ARCHLAB_FAULT`` asks for (``phase``, ``step``) and has not yet."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    for item, signum, at, where, target in _parse(spec):
        if at == step and where == phase and item not in _FIRED:
            _FIRED.add(item)
            if target == "self":
                os.kill(os.getpid(), signum)
            else:
                _signal_children("wandb-core", signum)


def _signal_children(name: str, signum: int, wait: float = 10.0) -> None:
    """Signal this process's children called ``name``; wait until SIGKILLed ones are gone."""
    pids = [pid for pid in _children() if _comm(pid) == name]
    for pid in pids:
        os.kill(pid, signum)
    deadline = time.monotonic() + wait
    while signum == signal.SIGKILL and time.monotonic() < deadline:
        if all(_state(pid) in (None, "Z") for pid in pids):  # dead (a zombie until reaped)
            return
        time.sleep(0.05)


def _children() -> list[int]:
    me, out = os.getpid(), []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process is gone
            continue
        if int(fields[1]) == me:
            out.append(int(stat.parent.name))
    return out


def _comm(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None


def _state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None
