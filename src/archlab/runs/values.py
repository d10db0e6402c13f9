"""Small value helpers shared by run records, comparisons, claims and reports: is it a usable
number, format it for a table, make it JSON-safe."""

from __future__ import annotations

import math
from typing import Any


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


REPORT_DIGITS = 12  # significant digits of every float written to a report


def stable_floats(obj: Any, digits: int = REPORT_DIGITS) -> Any:
    """A copy with every float rounded to ``digits`` significant digits.

    Reports must be a pure function of the run records on any machine, but the last bits of
    a least-squares fit (BLAS kernels) or a reduction (SIMD width) differ between CPUs; 12
    digits keep every meaningful one and drop those."""
    if isinstance(obj, dict):
        return {k: stable_floats(v, digits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [stable_floats(v, digits) for v in obj]
    if isinstance(obj, float) and math.isfinite(obj):
        return float(f"{obj:.{digits}g}")
    return obj


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
