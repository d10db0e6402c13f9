"""The comparison dashboard as a W&B workspace, built in code with ``wandb-workspaces``.

``archlab compare --wandb-workspace ENTITY/PROJECT [--sweep NAME]`` saves a workspace view in
which runs are grouped by sweep (W&B ``group``) then arm (``job_type``); ``val/loss`` and
``train/loss`` are drawn against ``tokens`` as the mean over seeds with a min–max band; a
parallel-coordinates panel spans the ``config.model.*`` knobs and the final ``val/loss``; a
run comparer shows the configs side by side. ``--dry-run`` prints the view's spec instead of
saving it (saving needs the W&B server and an API key).

Needs the optional extra: ``pip install "archlab[wandb-workspace]"``.
"""

from __future__ import annotations

import argparse
import json
import sys

# the knobs (config.model.*) the parallel-coordinates panel spans, in the README's order
KNOB_KEYS = (
    "model.norm",
    "model.norm_placement",
    "model.block",
    "model.mlp",
    "model.position",
    "model.qk_norm",
    "model.attention",
    "model.n_kv_heads",
    "model.window",
    "model.init",
    "model.d_model",
    "model.n_layers",
)
CURVES = ("val/loss", "train/loss")
X_AXIS = "tokens"
INSTALL = 'pip install "archlab[wandb-workspace]"'


class WorkspaceError(Exception):
    """A user-facing problem (message is one line)."""


def _modules():
    try:
        import wandb_workspaces.reports.v2 as wr
        import wandb_workspaces.workspaces as ws
    except ImportError:
        raise WorkspaceError(f"--wandb-workspace needs wandb-workspaces: {INSTALL}") from None
    return wr, ws


def curve_panels(wr) -> list:
    """Loss against tokens: one line per arm, the mean over its seeds, a min–max band."""
    return [
        wr.LinePlot(
            title=f"{metric} vs {X_AXIS} (mean, min–max over seeds)",
            x=X_AXIS,
            y=[metric],
            groupby_aggfunc="mean",
            groupby_rangefunc="minmax",
            smoothing_type="none",
            title_x=X_AXIS,
            title_y=metric,
        )
        for metric in CURVES
    ]


def knob_panels(wr, knob_keys=KNOB_KEYS) -> list:
    columns = [wr.ParallelCoordinatesPlotColumn(metric=wr.Config(k)) for k in knob_keys]
    columns.append(wr.ParallelCoordinatesPlotColumn(metric=wr.SummaryMetric("val/loss")))
    return [
        wr.ParallelCoordinatesPlot(title="knobs → final val/loss", columns=columns),
        wr.RunComparer(diff_only="split"),
    ]


def build_workspace(entity: str, project: str, sweep: str | None = None, knob_keys=KNOB_KEYS):
    """The workspace object (nothing is sent anywhere until ``.save()``)."""
    wr, ws = _modules()
    on_tokens = ws.SectionPanelSettings(x_axis=X_AXIS)
    sections = [
        ws.Section(
            name="Loss vs tokens", panels=curve_panels(wr), is_open=True, panel_settings=on_tokens
        ),
        ws.Section(name="Knobs", panels=knob_panels(wr, knob_keys), is_open=True),
    ]
    return ws.Workspace(
        entity=entity,
        project=project,
        name=f"archlab: {sweep}" if sweep else "archlab: sweeps",
        sections=sections,
        settings=ws.WorkspaceSettings(x_axis=X_AXIS, max_runs=100),
        runset_settings=ws.RunsetSettings(
            groupby=[ws.Metric("Group"), ws.Metric("JobType")],  # sweep, then arm
            filters=[ws.Metric("Group") == sweep] if sweep else "",
            pinned_columns=["summary:val/loss", "summary:status", "config:seed"],
        ),
    )


def parse_target(target: str) -> tuple[str, str]:
    parts = target.strip("/").split("/")
    if len(parts) != 2 or not all(parts):
        raise WorkspaceError(f"--wandb-workspace expects ENTITY/PROJECT, got {target!r}")
    return parts[0], parts[1]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--wandb-workspace",
        metavar="ENTITY/PROJECT",
        help="save a W&B workspace view comparing the project's runs (needs the W&B server)",
    )
    parser.add_argument("--sweep", help="with --wandb-workspace: only this sweep (W&B group)")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="with --wandb-workspace: print the view, save nothing",
    )


def run(args: argparse.Namespace) -> int:
    """``archlab compare --wandb-workspace``: exit 0 saved (or printed), 2 one-line error."""
    try:
        entity, project = parse_target(args.wandb_workspace)
        workspace = build_workspace(entity, project, args.sweep)
        if args.dry_run:
            print(json.dumps(workspace._to_model().model_dump(by_alias=True), indent=1))
            return 0
        saved = save(workspace)
    except WorkspaceError as err:
        print(f"archlab compare: error: {err}", file=sys.stderr)
        return 2
    print(f"saved W&B workspace view: {saved}")
    return 0


def save(workspace) -> str:
    """Upload the view (the only step that needs the W&B server)."""
    try:
        return workspace.save().url
    except Exception as err:  # noqa: BLE001 - any API / network / auth failure: one line
        msg = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise WorkspaceError(
            f"cannot save the W&B workspace: {type(err).__name__}: {msg}"
        ) from None
