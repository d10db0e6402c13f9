"""Write the comparison outputs: report.md, PNG figures, report.html and compare.json.

Layout of the output dir::

    report.md            GitHub-renderable report (links the PNGs relatively)
    report.html          one self-contained interactive page (see html.py)
    compare.json         the machine-readable table (Analysis.result)
    final_val_loss.png   per-arm seed points with mean and CI
    curves_<x>.png       train/val loss vs x in {step, tokens, flops, time}
    loss_vs_lr.png       only for an LR sweep

Curves show the seed mean with a min-max band over seeds; only the runs behind the arm's
statistics are drawn (no failed or diverged runs; the best LR in an LR sweep).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from archlab.runs.context_report import context_charts, context_markdown
from archlab.runs.curves import LOSS_METRICS, arm_curve, color
from archlab.runs.html import render_html
from archlab.runs.ladder_report import ladder_charts, ladder_markdown
from archlab.runs.table import relativize, write_csv
from archlab.runs.values import stable_floats

X_LABELS = {"step": "step", "tokens": "tokens", "flops": "training FLOPs", "time": "wall time (s)"}


def _f(x: float | None, digits: int = 4, sign: bool = False) -> str:
    if x is None:
        return "n/a"
    return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def _p(p: float | None) -> str:
    return "n/a" if p is None else ("<0.001" if p < 0.001 else f"{p:.3f}")


def _int(x: float | None) -> str:
    return "n/a" if x is None else f"{x:,.0f}"


def _loss_cell(stat: dict) -> str:
    if stat["mean"] is None:
        return "n/a"
    if stat["ci_low"] is None:
        return _f(stat["mean"]) + (" (n=1)" if stat["n"] == 1 else "")
    return f"{_f(stat['mean'])} ± {_f(stat['mean'] - stat['ci_low'])}"


def _delta_cells(d: dict | None) -> tuple[str, str]:
    if d is None:
        return "—", "—"
    delta = _f(d["mean"], sign=True)
    if d["ci_low"] is not None:
        delta += f" [{_f(d['ci_low'], sign=True)}, {_f(d['ci_high'], sign=True)}]"
    p = _p(d["p_value"])
    if d.get("p_holm") is not None:
        p += f", Holm {_p(d['p_holm'])}"
    if d["test"] != "none":
        p += f" ({d['test']}" + (f", {d['n_pairs']} seeds)" if d["test"] == "paired" else ")")
    return delta, p


def _lr_cells(arm: dict) -> list[str]:
    pick = arm.get("lr_pick") or {}
    lr = f"{arm['lr']:g}" if arm.get("lr") is not None else "n/a"
    return [lr + (" (grid edge!)" if pick.get("on_edge") else ""), _f(arm.get("lr_sensitivity"))]


def table_rows(result: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and formatted cells of the arms table (shared by report.md and report.html)."""
    level = f"{result['setup']['ci_level']:.0%}"
    lr = result["setup"]["lr_sweep"]
    by_arm = result["setup"].get("lr_by_arm")
    header = ["arm", "runs", "diverged", "failed"] + (["tuned lr", "LR sensitivity"] if lr else [])
    header += ["lr"] if by_arm else []
    unit = " (bits/byte)" if result["setup"].get("unit") == "bits/byte" else ""
    header += [
        f"final val loss{unit} (mean ± {level} CI)",
        f"Δ vs baseline [{level} CI]",
        "p (test)",
        "seed sd",
        "eval se (arm / Δ)",
        "verdict",
        "params",
        "tokens/s",
    ]
    rows = []
    for arm in result["arms"]:
        delta, p = _delta_cells(arm["diff"])
        cells = [arm["label"], str(arm["n_runs"]), str(arm["n_diverged"]), str(arm["n_failed"])]
        cells += _lr_cells(arm) if lr else []
        cells += [f"{arm['lr']:g}" if arm.get("lr") is not None else "n/a"] if by_arm else []
        cells += [_loss_cell(arm["final_val_loss"]), delta, p, _f(arm.get("seed_noise"))]
        eval_se = _f(arm.get("eval_noise"))
        if arm.get("eval_noise_diff") is not None:
            eval_se += f" / {_f(arm['eval_noise_diff'])}"
        cells += [eval_se, arm["verdict"], _int(arm["params"])]
        cells += [_int(arm["tokens_per_sec"])]
        rows.append(cells)
    return header, rows


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    esc = [[c.replace("|", "\\|") for c in r] for r in [header] + rows]
    lines = ["| " + " | ".join(esc[0]) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in esc[1:]])


def verdict_lines(result: dict[str, Any]) -> list[str]:
    """One sentence per non-baseline arm explaining its verdict."""
    base, alpha = result["baseline"], result["setup"]["alpha"]
    out = []
    for arm in result["arms"]:
        d = arm["diff"]
        if d is None:  # a baseline (on a ladder, each rung's own)
            continue
        tuned = result["setup"]["lr_sweep"]
        at_lr = ""
        if arm.get("lr") is not None and (tuned or result["setup"].get("lr_by_arm")):
            at_lr = f" at its {'tuned ' if tuned else ''}lr {arm['lr']:g}"
        if arm["test_verdict"] == "n/a":
            why = (
                "no test possible (needs ≥2 runs per arm, or ≥2 shared seeds with non-zero spread)"
            )
        else:
            test = (
                f"paired t-test on {d['n_pairs']} seeds"
                if d["test"] == "paired"
                else "Welch's t-test"
            )
            p = _p(d["p_value"])
            p = p.replace("<", "< ") if p.startswith("<") else f"= {p}"
            why = f"{arm['test_verdict']} (Δ {_f(d['mean'], sign=True)}, p {p}, {test}, alpha {alpha})"
        line = f"- **{arm['label']}** vs **{arm.get('baseline', base)}**{at_lr}: {why}"
        if arm["verdict"] == "unstable":
            line += (
                f"; **unstable**: {arm['n_diverged_compared']} seed(s) diverged "
                "(counted at their loss at init)"
            )
        out.append(line + ".")
    return out


def setup_line(result: dict[str, Any]) -> str:
    s = result["setup"]
    keys = ", ".join(f"`{k}`" for k in s["arm_keys"]) or "nothing (one arm)"
    line = (
        f"{s['n_runs']} runs from {', '.join(f'`{x}`' for x in s['sources'][:3])}"
        f"{' …' if len(s['sources']) > 3 else ''}; {len(result['arms'])} arms differing in {keys}; "
        f"seeds pooled ({', '.join(map(str, s['seeds']))}); baseline **{result['baseline']}**; "
        f"metric: {s['metric']}; {s['ci_level']:.0%} t-intervals; paired t-test by seed when "
        f"two arms share ≥2 seeds, else Welch; alpha {s['alpha']}."
    )
    proto = s.get("protocol") or {}
    if s["lr_sweep"] and proto.get("tune"):
        line += (
            f" LR sweep over `{s['lr_key']}`: each arm's LR is tuned on scout seeds "
            f"{proto['scout']} and compared on confirm seeds {proto['confirm']}"
            + (" (in sample: one seed only)." if proto.get("in_sample") else ".")
        )
    if s.get("budget"):
        line += f" Budget: {s['budget']['shared']}."
    if s["common"]:
        line += " Common: " + ", ".join(f"{k}={v}" for k, v in s["common"].items()) + "."
    return line


def _seed_band(grid_point: dict, init: float | None) -> tuple[float, float]:
    """Min–max over seeds at one LR, a diverged seed at the loss at init."""
    vals = [init if f is None else f for f in grid_point["finals"]]
    vals = [v for v in vals if v is not None] or [grid_point["mean"]]
    return min(vals), max(vals)


def build_charts(analysis, x_axes: list[str]) -> tuple[list[dict[str, Any]], list[str]]:
    """Chart specs (JSON-ready, shared by the PNGs and the HTML) and notes on dropped axes."""
    result, notes, charts = analysis.result, [], []
    curves = {m: [arm_curve(runs, m) for runs in analysis.compared_runs] for m in LOSS_METRICS}
    for axis in x_axes:
        for metric in LOSS_METRICS:
            series = []
            for i, (arm, c) in enumerate(zip(result["arms"], curves[metric])):
                if c is None:
                    continue
                if axis not in c:
                    notes.append(
                        f"arm {arm['label']}: no `{axis}` in its {metric} lines, not drawn vs {axis}"
                    )
                    continue
                series.append(
                    {
                        "name": arm["label"],
                        "color": color(i),
                        "x": c[axis],
                        "y": c["mean"],
                        "lo": c["lo"],
                        "hi": c["hi"],
                        "n": c["n"],
                    }
                )
            if series:
                charts.append(
                    {
                        "id": f"{metric.split('/')[0]}_{axis}",
                        "group": f"curves_{axis}",
                        "title": f"{metric} vs {X_LABELS[axis]} (mean over seeds, band: min–max)",
                        "xlabel": X_LABELS[axis],
                        "ylabel": metric,
                        "logx": False,
                        "series": series,
                    }
                )
    if result["setup"]["lr_sweep"]:
        series = []
        for i, arm in enumerate(result["arms"]):
            pts = [g for g in arm["lr_grid"] if g["lr"] is not None]
            ok = [g for g in pts if g["mean"] is not None]
            top = arm["loss_at_init"]
            band = [_seed_band(g, top) for g in ok]
            series.append(
                {
                    "name": arm["label"],
                    "color": color(i),
                    "points": True,
                    "x": [g["lr"] for g in ok],
                    "y": [g["mean"] for g in ok],
                    "lo": [b[0] for b in band],
                    "hi": [b[1] for b in band],
                    "markers": [
                        {"x": g["lr"], "y": top, "label": f"{g['n_diverged']}/{g['n']} diverged"}
                        for g in pts
                        if g["n_diverged"] and top is not None
                    ],
                }
            )
        charts.insert(
            0,
            {
                "id": "loss_vs_lr",
                "group": "loss_vs_lr",
                "logx": True,
                "title": "final val loss vs learning rate (seed mean; × = diverged, drawn at loss at init)",
                "xlabel": "learning rate",
                "ylabel": "final val loss",
                "series": series,
            },
        )
    return charts, sorted(set(notes))


def _plot_series(ax, s: dict[str, Any]) -> None:
    x, y = (
        np.asarray(s["x"], float),
        np.asarray([np.nan if v is None else v for v in s["y"]], float),
    )
    marker = "o" if s.get("points") or len(x) == 1 else None  # a single val point: a marker
    ls = "--" if s.get("dashed") else "-"
    ax.plot(x, y, color=s["color"], label=s["name"], marker=marker, lw=1.6, ls=ls)
    if "lo" in s:
        ax.fill_between(
            x, np.asarray(s["lo"], float), np.asarray(s["hi"], float), color=s["color"], alpha=0.18
        )
    for m in s.get("markers", []):
        ax.plot([m["x"]], [m["y"]], marker="x", ms=9, mew=2, color=s["color"], ls="none")


def distinct_ticks(ax, chart: dict[str, Any]) -> None:
    """Tick labels that never repeat: grid values on an LR axis, plain numbers elsewhere."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    if chart["id"] == "loss_vs_lr":
        xs = sorted({x for s in chart["series"] for x in s["x"]})
        ax.set_xticks(xs, [f"{x:g}" for x in xs])
        ax.xaxis.set_minor_formatter(NullFormatter())
    if chart.get("logy"):
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
    else:
        ax.ticklabel_format(axis="y", useOffset=False)


def write_pngs(charts: list[dict[str, Any]], result: dict[str, Any], out: Path) -> list[Path]:
    """One PNG per chart group (train+val side by side) plus the per-seed final loss plot."""
    os.environ.setdefault("MPLCONFIGDIR", tempfile.mkdtemp(prefix="archlab-mpl-"))
    import matplotlib  # matplotlib (~0.5 s): only when writing PNGs

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after matplotlib.use("Agg")

    written = []
    groups: dict[str, list[dict]] = {}
    for c in charts:
        groups.setdefault(c["group"], []).append(c)
    for name, group in groups.items():
        fig, axes = plt.subplots(1, len(group), figsize=(6.2 * len(group), 4.2), squeeze=False)
        for ax, c in zip(axes[0], group):
            for s in c["series"]:
                _plot_series(ax, s)
            ax.set_xscale("log" if c["logx"] else "linear")
            ax.set_yscale("log" if c.get("logy") else "linear")
            for v in c.get("vlines", []):
                ax.axvline(v, ls=":", color="gray")
            distinct_ticks(ax, c)
            ax.set(title=c["title"], xlabel=c["xlabel"], ylabel=c["ylabel"])
            ax.title.set_fontsize(9)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        fig.tight_layout()
        path = out / f"{name}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(result["arms"]), 4))
    for i, arm in enumerate(result["arms"]):
        vals = [s["val_loss"] for s in arm["seed_losses"]]
        ax.plot([i] * len(vals), vals, "o", color=color(i), alpha=0.6)
        st = arm["final_val_loss"]
        if st["mean"] is not None:
            err = (
                None
                if st["ci_low"] is None
                else [[st["mean"] - st["ci_low"]], [st["ci_high"] - st["mean"]]]
            )
            ax.errorbar([i + 0.15], [st["mean"]], yerr=err, fmt="s", color=color(i), capsize=4)
    ax.set_xticks(
        range(len(result["arms"])), [a["label"] for a in result["arms"]], rotation=20, fontsize=8
    )
    ax.set(
        ylabel="final val loss", title=f"seeds (dots), mean ± {result['setup']['ci_level']:.0%} CI"
    )
    ax.title.set_fontsize(9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = out / "final_val_loss.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path] + written


def render_markdown(
    result: dict[str, Any], pngs: list[Path], notes: list[str], extra: list[str] | None = None
) -> str:
    header, rows = table_rows(result)
    noise = result["seed_noise"]
    n_base = result["arms"][0]["final_val_loss"]["n"]
    md = [
        "# archlab compare",
        "",
        f"**Setup:** {setup_line(result)}",
        "",
        f"**Noise floor:** baseline seed noise (std of final val loss over seeds) = {_f(noise)} "
        f"over {n_base} seed(s); evaluation noise (standard error of a run's val loss over its "
        f"validation windows) = {_f(result.get('eval_noise'))}; the table also shows the "
        "evaluation noise of each Δ (per-window differences on the same windows)"
        + (" (a single seed: noise unknown, verdicts are n/a)" if noise is None else ""),
        "",
        "## Arms",
        "",
        markdown_table(header, rows),
        "",
        "## Verdicts",
        "",
    ]
    md += verdict_lines(result) or ["- only one arm: nothing to compare."]
    if result["setup"]["lr_sweep"]:
        lrs = sorted({g["lr"] for a in result["arms"] for g in a["lr_grid"] if g["lr"] is not None})
        cells = []
        for a in result["arms"]:
            by_lr = {g["lr"]: g for g in a["lr_grid"]}
            cells.append(
                [a["label"], _f(a["loss_at_init"]), _f(a.get("lr_sensitivity"))]
                + [
                    "—"
                    if lr not in by_lr
                    else _f(by_lr[lr]["mean"])
                    + (
                        f" ({by_lr[lr]['n_diverged']}/{by_lr[lr]['n']} div.)"
                        if by_lr[lr]["n_diverged"]
                        else ""
                    )
                    for lr in lrs
                ]
            )
        md += [
            "",
            f"## Learning-rate sweep (`{result['setup']['lr_key']}`)",
            "",
            (
                "LR sensitivity (Wortsman et al. 2023) = mean over the LR grid of "
                "min(final loss(lr), loss at init) − min over lr of final loss(lr); final loss "
                "is the seed mean, diverged runs count as the loss at init (the first logged "
                "train loss). Lower = more robust to the LR choice."
            ),
            "",
            markdown_table(
                ["arm", "loss at init", "LR sensitivity"] + [f"lr={lr:g}" for lr in lrs], cells
            ),
        ]
    md += ladder_markdown(result) + (extra or [])
    md += ["", "## Figures", ""]
    md += [f"![{p.stem}]({p.name})" for p in pngs]
    md += [
        "",
        (
            "Interactive version (hover, zoom, toggle arms): [report.html](report.html). "
            "Machine-readable: [compare.json](compare.json)."
        ),
    ]
    if result["failed_runs"]:
        md += ["", "## Failed runs (excluded)", ""]
        md += [
            f"- `{r['source']}` ({r['arm']}, seed {r['seed']}): {r['error'] or 'no error recorded'}"
            for r in result["failed_runs"]
        ]
    if result["diverged_runs"]:
        md += ["", "## Diverged runs (counted, not averaged)", ""]
        md += [
            f"- `{r['source']}` ({r['arm']}, seed {r['seed']}"
            + (f", lr {r['lr']:g}" if result["setup"]["lr_sweep"] and r["lr"] is not None else "")
            + f"): diverged at step {r['diverged_at_step']}"
            for r in result["diverged_runs"]
        ]
    if notes or result["warnings"]:
        md += ["", "## Notes", ""] + [f"- {n}" for n in notes + result["warnings"]]
    return "\n".join(md) + "\n"


def write_outputs(analysis, out: Path, x_axes: list[str]) -> list[Path]:
    """Write every output into ``out`` (created if needed); returns the written paths."""
    out.mkdir(parents=True, exist_ok=True)
    charts, notes = build_charts(analysis, x_axes)
    charts += ladder_charts(analysis.result) + context_charts(analysis)
    for axis in x_axes:
        if not any(c["group"] == f"curves_{axis}" for c in charts):
            notes.append(f"no arm has `{axis}` in its metric lines: {axis} figure omitted")
    result = stable_floats(relativize(analysis.result, out))
    pngs = write_pngs(charts, result, out)
    paths = {
        "report.md": render_markdown(result, pngs, notes, context_markdown(analysis)),
        "report.html": render_html(
            result, charts, table_rows(result), notes, setup_line(result), verdict_lines(result)
        ),
        "compare.json": json.dumps(result, indent=2, allow_nan=False) + "\n",
    }
    for name, text in paths.items():
        (out / name).write_text(text, encoding="utf-8")
    return [out / n for n in paths] + [write_csv(analysis, out)] + pngs
