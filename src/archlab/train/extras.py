"""Optional extras: choosing an option whose package is not installed fails up front, before
Hydra composes anything or data loads, with one line that names the install command.

The options are recognised on the command line (``logger=tensorboard``,
``hparams_search=lr_optuna``, ``hydra/sweeper=optuna``, ``hydra/launcher=slurm``) and, for the
loggers, in the composed config (``logger.kinds``, e.g. set by an experiment config).
"""

from __future__ import annotations

import importlib.util

from archlab.config import ConfigError

TENSORBOARD = ("tensorboard", "tensorboard")  # (module to find, extra)
OPTUNA = ("hydra_plugins.hydra_optuna_sweeper", "optuna")
SUBMITIT = ("hydra_plugins.hydra_submitit_launcher", "cluster")
WORKSPACES = ("wandb_workspaces", "wandb-workspace")

# override key -> {option: needed}; "*" matches any option of the group
NEEDS = {
    "logger": {"tensorboard": TENSORBOARD, "wandb_tensorboard": TENSORBOARD},
    "hparams_search": {"*": OPTUNA},
    "hydra/sweeper": {"optuna": OPTUNA},
    "hydra/launcher": {"slurm": SUBMITIT, "submitit_slurm": SUBMITIT, "submitit_local": SUBMITIT},
}
LOGGER_KINDS = {"tensorboard": TENSORBOARD}


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a missing parent package, or a blocked module
        return False


def install_hint(what: str, need: tuple[str, str]) -> str:
    module, extra = need
    return (
        f"{what} needs the `{extra}` extra ({module.split('.')[-1]} is not installed): "
        f'pip install "archlab[{extra}]"  (in a clone: pip install -e ".[{extra}]")'
    )


def check_overrides(overrides: list[str]) -> None:
    """Raise ConfigError for the first chosen option whose extra is missing."""
    for override in overrides:
        key, _, value = override.lstrip("+~").partition("=")
        options = NEEDS.get(key, {})
        for option in value.split(","):  # a sweep over options: each one
            if option.strip() in ("", "null"):
                continue
            need = options.get(option.strip()) or options.get("*")
            if need and not installed(need[0]):
                raise ConfigError(install_hint(f"{key}={option.strip()}", need))


def check_logger_kinds(kinds) -> None:
    for kind in kinds:
        need = LOGGER_KINDS.get(kind)
        if need and not installed(need[0]):
            raise ConfigError(install_hint(f"logger.kinds=[{kind}]", need))
