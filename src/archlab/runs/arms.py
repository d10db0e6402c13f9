"""Group runs into arms: runs that differ only by seed (and bookkeeping) form one arm.

The resolved configs are flattened to dotted keys (``model.mlp``). A key defines the arms
when its value differs across the runs, except for:

* ``seed`` -- seeds are pooled inside an arm (they are the replicates);
* bookkeeping that does not change the experiment: ``out_dir``, ``name``, ``resume``,
  everything under ``logger.`` and ``hydra.``, ``data_info.`` (facts derived from the data
  config, e.g. corpus sizes and fingerprint), any key whose last part ends in ``dir`` (``data.cache_dir``,
  ``trainer.default_root_dir``), the host-speed knobs and the extra long-context evaluation in
  ``IGNORED_KEYS``;
* ``optim.lr`` when it varies: it is then the LR-sweep axis, not an arm key.

Arm labels are the differing ``key=value`` pairs, with the last key part (``mlp=gelu``)
when that is unambiguous among the differing keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from archlab.runs.load import RunRecord

LR_KEY = "optim.lr"
IGNORED_KEYS = frozenset(
    {
        "seed",
        "out_dir",
        "name",
        "resume",
        "trainer.threads",
        "trainer.enable_progress_bar",
        "data.num_workers",
        "train.eval_context_multiples",  # extra evaluation only: training and val loss unchanged
    }
)
IGNORED_PREFIXES = ("logger.", "hydra.", "data_info.")
_MISSING = "<unset>"


class ArmError(ValueError):
    """A user-facing grouping problem (e.g. a ``--baseline`` that matches no arm)."""


@dataclass
class Arm:
    """An experimental condition: the differing key values and its runs (all seeds, all LRs)."""

    label: str
    values: dict[str, Any]
    runs: list[RunRecord] = field(default_factory=list)


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"model": {"mlp": "gelu"}}`` -> ``{"model.mlp": "gelu"}``; lists become tuples."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = tuple(value) if isinstance(value, list) else value
    return flat


def is_ignored(key: str) -> bool:
    last = key.rsplit(".", 1)[-1]
    return key in IGNORED_KEYS or key.startswith(IGNORED_PREFIXES) or last.endswith("dir")


def format_value(value: Any) -> str:
    """Config values as a user would type them in an override (``null``, ``true``, ``0.003``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    return str(value)


def differing_keys(flat_configs: list[dict[str, Any]]) -> list[str]:
    """Non-ignored keys whose value is not the same in every run (sorted)."""
    keys = sorted({k for flat in flat_configs for k in flat})
    return [
        key
        for key in keys
        if not is_ignored(key)
        and len({format_value(flat.get(key, _MISSING)) for flat in flat_configs}) > 1
    ]


def short_names(keys: list[str]) -> dict[str, str]:
    """Map each key to its last part when no other key shares that last part."""
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: (s if last.count(s) == 1 else k) for k, s in zip(keys, last)}


def group_arms(records: list[RunRecord]) -> tuple[list[Arm], list[str], bool]:
    """Group ``records`` (in input order) into arms.

    Returns ``(arms, arm_keys, lr_sweep)``: arms in order of first appearance, the dotted
    keys that define them, and whether ``optim.lr`` varies within an arm (the LR-sweep axis).
    Arms that each ran at one LR of their own (a tuned claim's confirm runs at the picks) are
    not a sweep: their LR is part of the arm, and every seed is compared.
    """
    flats = [flatten(r.config) for r in records]
    keys = differing_keys(flats)
    arm_keys = [k for k in keys if k != LR_KEY]
    names = short_names(arm_keys)
    arms: dict[tuple[str, ...], Arm] = {}
    for record, flat in zip(records, flats):
        values = {k: flat.get(k) for k in arm_keys}
        ident = tuple(format_value(flat.get(k, _MISSING)) for k in arm_keys)
        if ident not in arms:
            label = ", ".join(f"{names[k]}={v}" for k, v in zip(arm_keys, ident)) or "all runs"
            arms[ident] = Arm(label=label, values=values)
        arms[ident].runs.append(record)
    lr_sweep = LR_KEY in keys and any(
        len({format_value(flatten(r.config).get(LR_KEY)) for r in arm.runs}) > 1
        for arm in arms.values()
    )
    return list(arms.values()), arm_keys, lr_sweep


def _matches(value: Any, wanted: str) -> bool:
    if format_value(value) == wanted or str(value) == wanted:
        return True
    try:
        return isinstance(value, (int, float)) and float(wanted) == float(value)
    except ValueError:
        return False


def pick_baseline(arms: list[Arm], arm_keys: list[str], spec: str | None) -> int:
    """Index of the baseline arm: the first arm, or the first arm matching ``spec``.

    ``spec`` is ``key=value[,key=value]`` with full (``model.mlp``) or short (``mlp``) keys.
    """
    if not spec:
        return 0
    names = short_names(arm_keys)
    wanted: dict[str, str] = {}
    for part in spec.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            raise ArmError(f"--baseline expects key=value, got {part.strip()!r}")
        full = [k for k in arm_keys if key in (k, names[k], k.rsplit(".", 1)[-1])]
        if len(full) != 1:
            known = ", ".join(names[k] for k in arm_keys) or "none (a single arm)"
            raise ArmError(f"unknown baseline key {key!r}; keys that differ across arms: {known}")
        wanted[full[0]] = value
    for i, arm in enumerate(arms):
        if all(_matches(arm.values.get(k), v) for k, v in wanted.items()):
            return i
    labels = "; ".join(a.label for a in arms)
    raise ArmError(f"no arm matches --baseline {spec}; arms: {labels}")
