"""The one place that names runs: which overrides identify a job, its sweep folder, and the
time stamp of a single run's folder.

* :func:`job_overrides` — the overrides that make a job what it is (``name``, ``out_dir`` and
  ``resume`` say where and how it runs, not what): the run record's ``overrides``, the W&B run
  name, and the input of the folder name.
* :func:`job_dirname` — a sweep job's folder (``conf/train.yaml``'s ``hydra.sweep.subdir``,
  the claims runner, ``archlab train -m`` re-runs): the sorted overrides, readable; a name
  longer than :data:`MAX_DIRNAME` keeps a readable head and ends in a hash of the whole, so two
  jobs never share a folder (a cut would let ``seed=1`` find ``seed=0``'s).
* :func:`run_stamp` — a single run's folder and the default sweep name: the time to the
  second plus a random tail, so two runs started in the same second (two agents on one host)
  get different folders. Hydra's resolver caches it per composed config, as it does ``now``.
"""

from __future__ import annotations

import hashlib
import os
import time

NOT_IDENTITY = ("name", "out_dir", "resume")  # where / how a job runs, not what it is
MAX_DIRNAME = 200  # bytes; file systems allow 255 per path component
HASH_CHARS = 12


def override_key(override: str) -> str:
    """``+model.d_ff=64`` → ``model.d_ff``; ``model/mlp=gelu`` → ``model/mlp``."""
    return override.split("=", 1)[0].lstrip("+~")


def job_overrides(overrides) -> list[str]:
    """The overrides that identify a job (in the order given)."""
    return [str(o) for o in overrides if override_key(str(o)) not in NOT_IDENTITY]


def job_dirname(overrides) -> str:
    """A sweep job's folder name: unique per set of identifying overrides, order-free."""
    text = ",".join(sorted(job_overrides(overrides))) or "default"
    name = text.replace("/", ".").replace(" ", "")
    if name in (".", ".."):
        name = f"_{name}"
    if len(name.encode()) <= MAX_DIRNAME:
        return name
    digest = hashlib.sha256(text.encode()).hexdigest()[:HASH_CHARS]
    head = name.encode()[: MAX_DIRNAME - HASH_CHARS - 1].decode(errors="ignore")
    return f"{head}-{digest}"


def run_stamp() -> str:
    """``2026-01-31_12-00-00_3f9a1c``: a new run folder name (see the module doc)."""
    return time.strftime("%Y-%m-%d_%H-%M-%S") + "_" + os.urandom(3).hex()
