"""User paths resolve against the directory the command was run in (``paths.work_dir``).

Hydra may change the working directory of a job (``hydra.job.chdir=true``); a relative
``data.path`` that was checked before the launch would then point elsewhere inside the job.
Each job therefore makes the user's relative paths absolute against the launch directory
first, and records that directory as ``paths.work_dir``.
"""

from __future__ import annotations

import os
from pathlib import Path

# (section, key) of every path a user gives; resume also takes the word "auto"
USER_PATHS = (
    ("data", "path"),
    ("data", "data_files"),
    ("data", "val_files"),
    ("data", "cache_dir"),
)


def absolute(path: str, work_dir: Path) -> str:
    expanded = Path(os.path.expanduser(path))
    return str(expanded if expanded.is_absolute() else work_dir / expanded)


def resolve_user_paths(cfg, work_dir: str | os.PathLike) -> None:
    """Rewrite ``cfg``'s relative user paths as absolute ones under ``work_dir`` (in place)."""
    work_dir = Path(work_dir)
    cfg.paths.work_dir = str(work_dir)
    for section, key in USER_PATHS:
        node = getattr(cfg, section)
        value = getattr(node, key)
        if value:
            setattr(node, key, absolute(value, work_dir))
    tok = cfg.tokenizer.path  # a local tokenizer directory (a bare hub name stays as it is)
    if tok and (work_dir / os.path.expanduser(tok)).exists():
        cfg.tokenizer.path = absolute(tok, work_dir)
    if cfg.resume and cfg.resume != "auto":
        cfg.resume = absolute(cfg.resume, work_dir)
