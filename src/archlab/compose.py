"""One way to compose a config: Hydra overrides → a validated :class:`ArchlabConfig`.

Used by the CLI (its up-front check of every job), the claims runner, ``archlab bench`` and
the tests. :func:`compose` is the one-shot form; :class:`Composer` keeps one Hydra context open
for many configs (a sweep's or a claim's jobs). Hydra's multi-line composition errors become
one :class:`ConfigError` line (:func:`hydra_error_line`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from archlab.config import ArchlabConfig, ConfigError
from archlab.errors import first_line
from archlab.runs.naming import job_dirname, run_stamp
from archlab.validate import validate

# the top-level conf/ (src/archlab/conf links to it; an installed wheel holds a copy)
CONF_DIR = os.environ.get("ARCHLAB_CONF") or str((Path(__file__).parent / "conf").resolve())


def register_schema() -> None:
    """``archlab_schema`` (the dataclasses) in Hydra's ConfigStore, and archlab's resolvers."""
    ConfigStore.instance().store(name="archlab_schema", node=ArchlabConfig)
    register_resolvers()


def register_resolvers() -> None:
    """``${job_dir:<overrides>}`` (a sweep job's folder) and ``${run_stamp:}`` (a run's)."""
    if not OmegaConf.has_resolver("job_dir"):
        OmegaConf.register_new_resolver("job_dir", lambda overrides: job_dirname(overrides or []))
    if not OmegaConf.has_resolver("run_stamp"):  # cached per config, as Hydra's ${now:}
        OmegaConf.register_new_resolver("run_stamp", run_stamp, use_cache=True)


def to_dataclass(cfg) -> ArchlabConfig:
    """Turn a composed DictConfig into the typed ArchlabConfig (objects, not DictConfigs)."""
    # merging plain data into the schema rejects keys the dataclasses do not have (also ones
    # added with `+key=value`) and values of the wrong type
    plain = OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else cfg
    typed = OmegaConf.merge(OmegaConf.structured(ArchlabConfig), plain)
    return OmegaConf.to_object(typed)


def hydra_error_line(exc: BaseException) -> str:
    """Hydra's multi-line composition errors (and their causes), folded into one line."""
    full_key = getattr(exc, "full_key", None)  # OmegaConf: e.g. `+train.foo=1` in the schema merge
    if full_key and str(exc).startswith("Key '") and " not in " in str(exc):
        return (
            f"{full_key} is not a config key ({first_line(exc)}): check the "
            "spelling, or list all keys with `archlab train --cfg job`"
        )
    chain: list[list[str]] = []
    while exc is not None:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        chain.append(lines or [type(exc).__name__])
        exc = exc.__cause__
    missing = _missing_option(chain[0])
    if missing:
        return missing
    first = chain[0][0].rstrip(".")
    cause = chain[-1][0] if len(chain) > 1 else ""
    if "Could not override" in first or " not in " in cause:
        key = re.search(r"'([^']+)'", first)
        return (
            f"{key.group(1) if key else first} is not a config key ({cause}): check the "
            "spelling, or list all keys with `archlab train --cfg job`"
        )
    if first.startswith("Error merging override"):
        return f"{first.removeprefix('Error merging override ')}: {cause}"
    return f"{first}: {cause}" if cause else first


def _missing_option(lines: list[str]) -> str | None:
    """``Could not find 'model/mlp/foo'`` + Hydra's option list → ``group=option is not …``."""
    text = " ".join(lines)
    missing = re.search(r"Could not find '([^']+)'", text)
    if not (missing and "Available options" in text):
        return None
    group, _, option = missing.group(1).rpartition("/")
    i = next(i for i, ln in enumerate(lines) if "Available options" in ln)
    options = [ln for ln in lines[i + 1 :] if " " not in ln and ":" not in ln]
    return f"{group}={option} is not an option; choose one of: {', '.join(options)}"


class Composer:
    """``with Composer() as c: cfg = c.compose([...])``: many configs in one Hydra context."""

    def __init__(self, job_name: str = "train"):
        self.job_name = job_name
        self._ctx = None

    def __enter__(self) -> Composer:
        register_schema()
        self._ctx = initialize_config_dir(
            config_dir=CONF_DIR, version_base="1.3", job_name=self.job_name
        )
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._ctx.__exit__(*exc)

    def raw(self, overrides: list[str], hydra: bool = False):
        """The composed DictConfig (``hydra=True``: with the ``hydra`` node); errors → one line."""
        try:
            return hydra_compose(
                config_name="train", overrides=list(overrides), return_hydra_config=hydra
            )
        except ConfigError:
            raise
        except Exception as e:
            raise ConfigError(hydra_error_line(e)) from None

    def compose(self, overrides: list[str], check: bool = True) -> ArchlabConfig:
        """The typed config of ``overrides``; ``check``: validated (:mod:`archlab.validate`)."""
        try:
            cfg = to_dataclass(self.raw(overrides))
        except ConfigError:
            raise
        except Exception as e:
            raise ConfigError(hydra_error_line(e)) from None
        if check:
            validate(cfg)
        return cfg

    def job(self, overrides: list[str]) -> tuple[ArchlabConfig, dict[str, str]]:
        """(typed config, config-group choices) of one job, as a Hydra job would see them."""
        cfg = self.raw(overrides, hydra=True)
        choices = {k: v for k, v in cfg.hydra.runtime.choices.items() if not k.startswith("hydra")}
        plain = OmegaConf.to_container(cfg, resolve=False)
        plain.pop("hydra", None)
        return to_dataclass(OmegaConf.create(plain)), choices


def compose(overrides: list[str] | tuple[str, ...] = (), check: bool = True) -> ArchlabConfig:
    """Compose ``conf/train.yaml`` with ``overrides``; validated unless ``check=False``."""
    with Composer() as c:
        return c.compose(list(overrides), check=check)
