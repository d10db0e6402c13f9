"""Deterministic fault injection for tests: ``ARCHLAB_FAULT=<signal>@<step>:<phase>``.

An environment variable, not a config key: a config key would enter job names, the run
record and W&B. The process sends itself ``signal`` (``SIGKILL``, ``SIGTERM``, ``SIGINT``) when
it reaches ``phase`` at optimizer step ``step``:

* ``step``          at the end of step ``step``'s batch: the optimizer has stepped, the step's
                    metrics row is not yet written (rows of earlier steps are);
* ``before-ckpt``   the checkpoint of step ``step`` is about to be written;
* ``during-ckpt``   its temp file is fully written but not yet renamed to ``last.ckpt``;
* ``after-ckpt``    it has been renamed into place.

``ARCHLAB_FAULT=SIGKILL@16:during-ckpt`` replays "killed while writing the step-16 checkpoint"
at exactly that point, however loaded the machine is (the timing-based kills it replaces were
coin tosses). Several faults: separate them with commas. Unset: every call is a dict lookup.
"""

from __future__ import annotations

import os
import signal

ENV = "ARCHLAB_FAULT"
PHASES = ("step", "before-ckpt", "during-ckpt", "after-ckpt")


def _parse(spec: str) -> list[tuple[int, int, str]]:
    faults = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        try:
            sig, rest = item.split("@", 1)
            step, phase = rest.split(":", 1)
            faults.append((int(signal.Signals[sig.strip().upper()]), int(step), phase.strip()))
        except (ValueError, KeyError):
            raise ValueError(f"{ENV}={spec!r}: expected <SIGNAL>@<step>:<phase>") from None
        if faults[-1][2] not in PHASES:
            raise ValueError(f"{ENV}: phase {phase!r} is not one of {', '.join(PHASES)}")
    return faults


def fault_point(phase: str, step: int) -> None:
    """Signal this process if ``ARCHLAB_FAULT`` asks for (``phase``, ``step``)."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    for signum, at, where in _parse(spec):
        if at == step and where == phase:
            os.kill(os.getpid(), signum)
