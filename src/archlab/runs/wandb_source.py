"""Read the runs of a W&B group through the public API into ``RunRecord``s.

``wandb.Api().runs("entity/project", filters={"group": group})`` yields runs whose
``config`` is the logged (nested) config, ``summary`` the last logged values (plus
whatever ``archlab train`` wrote as its summary) and ``scan_history()`` every logged row.
They map onto the run-dir contract as follows:

* config: ``run.config`` without W&B-internal keys (``_wandb``, ...);
* summary: the run's summary; ``status`` from ``summary.status`` if present, else from
  the W&B state (``finished`` -> completed, ``failed``/``crashed`` -> failed, others kept);
* metrics: history rows with W&B-internal keys dropped; ``step`` from ``step`` if logged,
  else ``trainer/global_step``, else ``_step``.

The API object can be injected (tests pass a fake); by default ``wandb`` is imported
lazily and any failure (offline, no API key) becomes one ``WandbSourceError`` line.
"""

from __future__ import annotations

from typing import Any

from archlab.errors import describe
from archlab.runs.load import RunRecord

_STATES = {"finished": "completed", "failed": "failed", "crashed": "failed", "killed": "failed"}


class WandbSourceError(Exception):
    """Could not read runs from W&B (message is one line)."""


def _public(d: Any) -> dict[str, Any]:
    items = d.items() if hasattr(d, "items") else dict(d).items()
    return {k: v for k, v in items if not str(k).startswith("_")}


def record_from_wandb_run(run: Any) -> RunRecord:
    """Convert one public-API run object into the in-memory run record."""
    config = _public(run.config)
    summary = _public(run.summary)
    summary.setdefault("status", _STATES.get(getattr(run, "state", "finished"), run.state))
    summary.setdefault("seed", config.get("seed"))
    if summary["status"] == "failed" and not summary.get("error"):
        summary["error"] = f"W&B run state: {run.state}"
    metrics = []
    for row in run.scan_history():
        step = row.get("step", row.get("trainer/global_step", row.get("_step")))
        line = {k: v for k, v in row.items() if not k.startswith("_") and v is not None}
        line["step"] = step
        metrics.append(line)
    source = f"wandb:{'/'.join(getattr(run, 'path', None) or [getattr(run, 'id', '?')])}"
    return RunRecord(source=source, config=config, summary=summary, metrics=metrics)


def load_wandb_runs(path: str, api: Any = None) -> list[RunRecord]:
    """All runs of ``entity/project/group``; raises WandbSourceError on any API failure."""
    parts = path.strip("/").split("/")
    if len(parts) != 3 or not all(parts):
        raise WandbSourceError(f"--wandb expects ENTITY/PROJECT/GROUP, got {path!r}")
    entity, project, group = parts
    try:
        if api is None:
            import wandb  # wandb (~1 s): only for --wandb

            api = wandb.Api(timeout=15)
        runs = list(api.runs(f"{entity}/{project}", filters={"group": group}))
        records = [record_from_wandb_run(r) for r in runs]
    except Exception as err:
        raise WandbSourceError(f"cannot read W&B runs of {path}: {describe(err)}") from None
    if not records:
        raise WandbSourceError(f"no runs in W&B group {path}")
    return records
