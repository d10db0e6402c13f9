"""Each arm's tuned learning rate, chosen out of sample.

The LR is picked on *scout* seeds and the arms are compared on disjoint *confirm* seeds at
those LRs, so the comparison does not carry the winner's curse of picking the best of several
noisy results on the data it then reports.

The pick is robust near a flat optimum: a quadratic in log LR is fitted to the scout runs'
final losses (a diverged run counts as its loss at initialisation, never as missing) at the
grid LRs within two grid steps of the lowest mean, and its minimum is snapped to the nearest
LR of the fit. The window keeps the fit local: over a wide stability grid (1e-3 … 1) the loss
is no parabola, and a fit over all of it puts the vertex far from the optimum. LRs that do not
train at all (mean at or above the loss at init, e.g. every seed diverged) stay in the curve
but not in the fit: a parabola cannot follow a cliff. With fewer than three grid LRs in the
fit, or a fit that is not convex, the grid LR with the lowest scout mean is taken. A pick on
the edge of the grid gets a warning: the optimum may lie outside it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

FIT_WINDOW = 2  # grid steps either side of the lowest mean that the quadratic is fitted to


@dataclass
class LrPick:
    lr: float | None
    method: str  # "quadratic fit" | "lowest mean" | "none"
    on_edge: bool = False
    curve: list[dict] = field(default_factory=list)  # per grid LR: mean, sd, n over scouts
    fit: list[float] | None = None  # quadratic coefficients in log10(lr), highest first

    @property
    def warning(self) -> str | None:
        if self.lr is None or not self.on_edge:
            return None
        return f"tuned LR {self.lr:g} is on the edge of the grid: extend the grid"


def parse_seeds(text: str | None) -> list[int] | None:
    """``"0,1"`` / ``"2-8"`` / ``"0,3-5"`` -> sorted seeds (None for None/empty)."""
    if not text:
        return None
    seeds: set[int] = set()
    for part in str(text).split(","):
        lo, sep, hi = part.strip().partition("-")
        if not lo.strip().isdigit() or (sep and not hi.strip().isdigit()):
            raise ValueError(f"seeds must look like 0,1 or 2-8, got {text!r}")
        seeds.update(range(int(lo), int(hi) + 1) if sep else [int(lo)])
    return sorted(seeds)


def _curve(points: list[tuple[float, float]]) -> list[dict]:
    by_lr: dict[float, list[float]] = {}
    for lr, loss in points:
        by_lr.setdefault(lr, []).append(loss)
    out = []
    for lr in sorted(by_lr):
        v = np.asarray(by_lr[lr])
        sd = float(v.std(ddof=1)) if len(v) > 1 else None
        out.append({"lr": lr, "mean": float(v.mean()), "sd": sd, "n": len(v)})
    return out


def quadratic_fit(x: list[float], y: list[float]) -> list[float]:
    """Least-squares a·x² + b·x + c, as ``np.polyfit(x, y, 2)`` returns it ([a, b, c]).

    In plain Python floats (exactly rounded sums, a 3×3 elimination) rather than LAPACK,
    whose last bits depend on the CPU's BLAS kernel: the fit is written to reports that must
    be the same on every machine. x is centred first for a well-conditioned system."""
    m = math.fsum(x) / len(x)
    u = [xi - m for xi in x]
    p = [math.fsum(ui**k for ui in u) for k in range(5)]  # power sums of the centred x
    q = [math.fsum(ui**k * yi for ui, yi in zip(u, y)) for k in range(3)]
    rows = [[p[4], p[3], p[2], q[2]], [p[3], p[2], p[1], q[1]], [p[2], p[1], p[0], q[0]]]
    for col in range(3):  # Gauss-Jordan with partial pivoting
        piv = max(range(col, 3), key=lambda r: abs(rows[r][col]))
        rows[col], rows[piv] = rows[piv], rows[col]
        for r in range(3):
            if r != col:
                f = rows[r][col] / rows[col][col]
                rows[r] = [a - f * b for a, b in zip(rows[r], rows[col])]
    a, b, c = (rows[i][3] / rows[i][i] for i in range(3))
    return [a, b - 2 * a * m, a * m * m - b * m + c]  # back to uncentred x


def pick_lr(points: list[tuple[float, float]], ceiling: float | None = None) -> LrPick:
    """``points``: (lr, final loss) of each scout run, diverged runs already at their init loss;
    ``ceiling``: the loss at init (LRs whose mean reaches it are left out of the fit)."""
    points = [(lr, v) for lr, v in points if lr and lr > 0 and v is not None and math.isfinite(v)]
    if not points:
        return LrPick(None, "none")
    curve = _curve(points)
    grid = [c["lr"] for c in curve]
    best = grid.index(min(curve, key=lambda c: c["mean"])["lr"])
    window = set(grid[max(0, best - FIT_WINDOW) : best + FIT_WINDOW + 1])
    trains = {c["lr"] for c in curve if ceiling is None or c["mean"] < ceiling} & window
    fitted = [(lr, v) for lr, v in points if lr in trains]
    x = [math.log10(lr) for lr, _ in fitted]
    y = [v for _, v in fitted]
    lr, method, fit = None, "lowest mean", None
    if len(trains) >= 3:
        coef = quadratic_fit(x, y)
        if coef[0] > 0:  # convex: its vertex, snapped to the nearest LR of the fit
            vertex = -coef[1] / (2 * coef[0])
            lr = min(sorted(trains), key=lambda g: abs(math.log10(g) - vertex))
            method, fit = "quadratic fit", [float(c) for c in coef]
    if lr is None:
        lr = min(curve, key=lambda c: c["mean"])["lr"]
    on_edge = len(grid) >= 2 and lr in (grid[0], grid[-1])
    return LrPick(lr, method, on_edge, curve, fit)
