"""Checks a single run needs before Hydra touches its run directory.

Hydra writes ``<run dir>/.hydra/*.yaml`` before the job starts, so anything that refuses a
start into an *existing* directory (a resume that does not fit, a directory in use) must
refuse here, or the refusal would rewrite the run it refused. :func:`preflight` raises
:class:`AlreadyComplete` when there is nothing to do (the CLI prints it and exits 0).
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from archlab.config import ArchlabConfig, ConfigError
from archlab.runs.naming import override_key
from archlab.runs.record import read_summary
from archlab.train.checkpoint import check_numerics, config_diff, find_resume, load
from archlab.train.lock import check_free


class AlreadyComplete(Exception):
    """Resuming a finished run: nothing to do, nothing touched (the message says so)."""


def run_dir_of(overrides: list[str]) -> Path | None:
    """The explicit ``hydra.run.dir=`` of a single run (None: a fresh time-stamped folder)."""
    given = [o.split("=", 1)[1] for o in overrides if override_key(o) == "hydra.run.dir"]
    return Path(given[-1]).expanduser() if given else None


def preflight(cfg: ArchlabConfig, overrides: list[str]) -> None:
    """Lock and resume checks of one single run (``cfg``: its composed config)."""
    run_dir = run_dir_of(overrides)
    if run_dir is not None:
        check_free(run_dir)
    if cfg.resume in (None, "null", "None", "none", ""):
        return
    path = find_resume(run_dir, cfg.resume) if run_dir is not None or cfg.resume != "auto" else None
    if path is not None:
        _check_fits(cfg, load(path), path, run_dir)


def _check_fits(cfg: ArchlabConfig, ckpt: dict, path: Path, run_dir: Path | None) -> None:
    check_numerics(ckpt, path)  # before the config: a numerics change explains the rest
    step, max_steps = int(ckpt["global_step"]), cfg.train.max_steps
    saved = ckpt.get("config") or {}
    cfg.model.vocab_size = (saved.get("model") or {}).get("vocab_size", cfg.model.vocab_size)
    diffs = config_diff(saved, OmegaConf.to_container(OmegaConf.structured(cfg)))
    if diffs:
        more = f" (+{len(diffs) - 1} more)" if len(diffs) > 1 else ""
        raise ConfigError(
            f"resume: checkpoint {path} belongs to another config: {diffs[0]}{more}; "
            "drop that override, or start a new run (without resume)"
        )
    if max_steps is None:  # train.budget: max_steps is derived when the run starts
        return
    if max_steps < step:
        raise ConfigError(
            f"train.max_steps={max_steps} is below the checkpoint's step {step} ({path}): "
            f"a resumed run can only go on; give train.max_steps >= {step}"
        )
    done = read_summary(run_dir) if run_dir is not None else None
    if max_steps == step and (done or {}).get("status") in ("completed", "diverged", None):
        raise AlreadyComplete(
            f"archlab train: {run_dir or path} is already complete ({step} of {max_steps} "
            "steps); nothing changed (raise train.max_steps to train further)"
        )
