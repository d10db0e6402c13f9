"""Small value helpers shared by run records, comparisons, claims and reports: is it a usable
number, format it for a table, make it JSON-safe."""

from __future__ import annotations

import math
from typing import Any

# one colour per arm, the same in every report, chart and page (report, context, ladder)
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]


def color(i: int) -> str:
    return COLORS[i % len(COLORS)]


def finite(x: Any) -> bool:
    """A real, finite number (bools are not numbers here)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def number(x: Any) -> float | None:
    """``x`` as a float if it is a finite number, else None."""
    return float(x) if finite(x) else None


def fmt(x: Any, digits: int | str = 4) -> str:
    """A number for a report: ``n/a`` for None; ``digits`` decimals (very large or small floats
    in 3 significant digits); a str ``digits`` is a format spec (``",.0f"``), ``n/a`` for
    anything that is not a number."""
    if isinstance(digits, str):
        return format(x, digits) if isinstance(x, (int, float)) else "n/a"
    if x is None:
        return "n/a"
    if isinstance(x, float) and (abs(x) >= 1e4 or (x != 0 and abs(x) < 1e-3)):
        return f"{x:.3g}"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def json_ready(obj: Any) -> Any:
    """NaN/inf -> None, tuples -> lists, numpy scalars -> Python, so JSON round-trips exactly."""
    if isinstance(obj, dict):
        return {str(k) if not isinstance(k, str) else k: json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
