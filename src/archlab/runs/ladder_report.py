"""The ladder's figures (chart specs shared by the PNGs and report.html) and its report table."""

from __future__ import annotations

from typing import Any

import numpy as np

from archlab.runs.ladder import curve_values, trend_text


def _color(i: int) -> str:
    from archlab.runs.values import color

    return color(i)


def _loss_series(i: int, label: str, arm: dict) -> list[dict[str, Any]]:
    pts = [r for r in arm["rungs"] if r["mean"] is not None]
    series = [
        {
            "name": label,
            "color": _color(i),
            "points": True,
            "x": [r["compute"] for r in pts],
            "y": [r["mean"] for r in pts],
            "lo": [r["lo"] for r in pts],
            "hi": [r["hi"] for r in pts],
        }
    ]
    fit = arm.get("fit")
    if fit and pts:
        top = arm["extrapolated"]["compute"] if arm.get("extrapolated") else pts[-1]["compute"]
        xs = np.geomspace(pts[0]["compute"], top, 24)
        kind = fit["kind"] + (
            " (extrapolated past the last rung)" if arm.get("extrapolated") else ""
        )
        series.append(
            {
                "name": f"{label}: {kind} fit",
                "color": _color(i),
                "dashed": True,
                "x": [float(x) for x in xs],
                "y": [float(y) for y in curve_values(fit, xs)],
            }
        )
    return series


def _gap_series(i: int, label: str, arm: dict) -> dict[str, Any] | None:
    pts = [r for r in arm["rungs"] if r["gap"] and r["gap"]["mean"] is not None]
    if not pts:
        return None
    ci = [r["gap"]["ci"] for r in pts]
    return {
        "name": f"{label} − baseline",
        "color": _color(i),
        "points": True,
        "x": [r["rung_compute"] for r in pts],
        "y": [r["gap"]["mean"] for r in pts],
        "lo": [c[0] if c[0] is not None else r["gap"]["mean"] for c, r in zip(ci, pts)],
        "hi": [c[1] if c[1] is not None else r["gap"]["mean"] for c, r in zip(ci, pts)],
    }


def ladder_charts(result: dict[str, Any]) -> list[dict[str, Any]]:
    ladder = result.get("ladder")
    if not ladder:
        return []
    loss, gaps = [], []
    for i, (label, arm) in enumerate(ladder["arms"].items()):
        loss += _loss_series(i, label, arm)
        gap = _gap_series(i, label, arm)
        if gap:
            gaps.append(gap)
    base = {"group": "ladder", "logx": True, "xlabel": "training compute (FLOPs)"}
    charts = [
        {
            **base,
            "id": "ladder_loss",
            "logy": True,
            "title": "final val loss vs compute (seed mean, band: min–max; dashed: fit)",
            "ylabel": "final val loss",
            "series": loss,
        }
    ]
    if gaps:
        charts.append(
            {
                **base,
                "id": "ladder_gap",
                "title": f"paired gap to {ladder['baseline']} per rung (band: 95% CI)",
                "ylabel": "Δ final val loss",
                "series": gaps,
            }
        )
    return charts


def ladder_markdown(result: dict[str, Any]) -> list[str]:
    ladder = result.get("ladder")
    if not ladder:
        return []
    keys = ", ".join(f"`{k}`" for k in ladder["rung_keys"])
    md = [
        "",
        "## Scale ladder",
        "",
        f"Rungs differ in {keys}; baseline arm **{ladder['baseline']}**.",
        "",
    ]
    md += [
        "| arm | compute (FLOPs) | loss (mean, n) | gap to baseline [CI] |",
        "|---|---|---|---|",
    ]
    for label, arm in ladder["arms"].items():
        for r in arm["rungs"]:
            gap = "—"
            if r["gap"] and r["gap"]["mean"] is not None:
                lo, hi = r["gap"]["ci"]
                ci = f" [{lo:+.4f}, {hi:+.4f}]" if lo is not None else ""
                gap = f"{r['gap']['mean']:+.4f}{ci}"
            mean = "n/a" if r["mean"] is None else f"{r['mean']:.4f} (n={r['n']})"
            md.append(f"| {label} | {r['compute']:.3g} | {mean} | {gap} |")
    md.append("")
    for label, arm in ladder["arms"].items():
        md.append(f"- **{label}**: {_fit_text(arm)}")
        if arm.get("trend"):
            md.append(f"  - gap trend vs log10 compute: {trend_text(arm['trend'])}")
    return md


def _fit_text(arm: dict) -> str:
    fit = arm.get("fit")
    if not fit:
        return "no fit (fewer than 2 rungs)"
    if fit["kind"] == "power law":
        ex = arm["extrapolated"]
        return (
            f"saturating power law L(C) = {fit['E']:.3f} + {fit['A']:.3g}·C^-{fit['alpha']:.3g} "
            f"(R² {fit['r2']:.3f}); "
            f"extrapolated (a fit, not a measurement) to {ex['compute']:.3g} FLOPs: {ex['loss']:.3f}"
        )
    return (
        f"log-linear L = {fit['a']:.3f} + {fit['b']:.3f}·log10 C (R² {fit['r2']:.3f}); "
        "fewer than 5 rungs: no power law, no extrapolation"
    )
