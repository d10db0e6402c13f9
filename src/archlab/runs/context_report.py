"""Long context on the same tokens, per arm: loss vs position and what the long context buys.

Reads ``summary.long_context`` of each arm's compared runs (``archlab.train.evaluation``).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _reports(runs: list, k: str) -> tuple[list[dict], list[str]]:
    reports = [(r.summary.get("long_context") or {}).get(k) for r in runs]
    ok = [x for x in reports if isinstance(x, dict) and "curve" in x]
    nulls = [x["null"] for x in reports if isinstance(x, dict) and "null" in x]
    return ok, nulls


def multiples(analysis) -> list[str]:
    keys = set()
    for runs in analysis.compared_runs:
        for r in runs:
            keys |= set(r.summary.get("long_context") or {})
    return sorted(keys, key=lambda k: int(k.rstrip("x")))


def context_charts(analysis) -> list[dict[str, Any]]:
    from archlab.runs.values import color

    charts = []
    for k in multiples(analysis):
        series = []
        for i, (arm, runs) in enumerate(zip(analysis.result["arms"], analysis.compared_runs)):
            ok, _ = _reports(runs, k)
            if not ok:
                continue
            curve = np.mean([x["curve"]["loss"] for x in ok], axis=0)
            series.append(
                {
                    "name": arm["label"],
                    "color": color(i),
                    "x": ok[0]["curve"]["position"],
                    "y": [float(v) for v in curve],
                }
            )
        if series:
            first = next(iter(_reports(analysis.compared_runs[0] or [], k)[0] or [{}]), {})
            edges = list(first.get("buckets") or {})
            T = int(edges[0].split(",")[1].rstrip(")")) if edges else None
            charts.append(
                {
                    "vlines": [T] if T else [],
                    "id": f"position_{k}",
                    "group": "long_context",
                    "logx": False,
                    "title": f"loss vs position in {k} windows (full context; seed mean; dotted: trained length)",
                    "xlabel": "position in the window",
                    "ylabel": "val loss",
                    "series": series,
                }
            )
    return charts


def context_markdown(analysis) -> list[str]:
    ks = multiples(analysis)
    if not ks:
        return []
    md = [
        "",
        "## Long context on the same tokens",
        "",
        (
            "Targets at positions ≥ T of long windows, scored with the full context and with the "
            "context cut to T (sliding window). gain = cut − full: positive = the longer context "
            "helps. Same text, nothing else changes."
        ),
        "",
        "| arm | multiple | full | cut to T | gain (± se) | note |",
        "|---|---|---|---|---|---|",
    ]
    for arm, runs in zip(analysis.result["arms"], analysis.compared_runs):
        for k in ks:
            ok, nulls = _reports(runs, k)
            if not ok:
                md.append(f"| {arm['label']} | {k} | — | — | — | {nulls[0] if nulls else 'n/a'} |")
                continue
            full, cut = np.mean([x["full"] for x in ok]), np.mean([x["cut"] for x in ok])
            gains = [x["gain"] for x in ok]
            se = np.std(gains, ddof=1) / np.sqrt(len(gains)) if len(gains) > 1 else None
            se_txt = f" ± {se:.4f}" if se is not None else ""
            md.append(
                f"| {arm['label']} | {k} | {full:.4f} | {cut:.4f} | "
                f"{np.mean(gains):+.4f}{se_txt} | {len(ok)} seed(s) |"
            )
    return md
