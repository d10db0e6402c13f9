"""Report sections of a claim over its LR grid: per arm and LR, the runs, divergences, the
mean final val loss and the mean of each of the claim's trajectory metrics (e.g. the max
attention logit, |log Z|); and the margins δ with the literature's number beside each.
Pure functions of the run records and the claim file."""

from __future__ import annotations

from archlab.claims.metrics import finite, metric_value, run_lr
from archlab.claims.registry import Claim


def _mean(values: list[float]) -> str:
    vals = [v for v in values if finite(v)]
    if not vals:
        return "—"
    m = sum(vals) / len(vals)
    return f"{m:.3g}" if abs(m) >= 1e4 or (m and abs(m) < 1e-3) else f"{m:.4f}"


def _cells(runs: list, extra: list[str]) -> list[str]:
    live = [r for r in runs if r.status != "failed"]
    diverged = sum(r.status == "diverged" for r in live)
    finals = [r.final_val_loss() for r in live if r.status != "diverged"]
    cells = [str(len(live)), f"{diverged}/{len(live)}" if live else "—", _mean(finals)]
    return cells + [_mean([metric_value(r, m) for r in live]) for m in extra]


def _tokens(run) -> int | None:
    """Planned tokens (a diverged run trained fewer: it still belongs to its row)."""
    t = run.summary.get("planned_tokens")
    return int(t) if t else None


def grid_lines(claim: Claim, recs: dict[str, list]) -> list[str]:
    """The per-arm × LR table (empty without an LR grid or runs). Runs of different lengths
    (scouts at 1M tokens, confirms at 2M) get rows of their own: a mean over both is neither."""
    runs = [r for rs in recs.values() for r in rs]
    lrs = sorted({run_lr(r) for r in runs} - {None})
    if len(lrs) < 2:
        return []
    lengths = sorted({_tokens(r) for r in runs}, key=lambda t: (t is None, t))
    split = len(lengths) > 1
    extra = [m for m in claim.metrics if ":" in m]
    head = ["arm", "LR", *(["tokens per run"] if split else []), "runs", "diverged"]
    head += ["val loss (non-diverged mean)", *extra]
    md = [
        "## Per arm and learning rate",
        "",
        (
            "Every recorded run, by arm and LR: divergences (a diverged run scores its loss at "
            "init in the checks), and seed means of the final val loss and the claim's metrics."
        ),
        "",
        "| " + " | ".join(f"`{h}`" if ":" in h else h for h in head) + " |",
        "|" + "---|" * len(head),
    ]
    for arm, arm_runs in recs.items():
        for lr in lrs:
            for n in lengths if split else [None]:
                at = [r for r in arm_runs if run_lr(r) == lr and (not split or _tokens(r) == n)]
                if at:
                    size = [f"{n:,}" if n else "—"] if split else []
                    md.append(f"| {arm} | {lr:g} | " + " | ".join(size + _cells(at, extra)) + " |")
    return md + [""]


def margin_lines(claim: Claim) -> list[str]:
    """Each check's δ, fixed in the claim before any run, beside the literature's number."""
    rows = [c for c in claim.rule if c.get("literature")]
    if not rows:
        return []
    md = ["## Margins and the literature", "", "| check | arm vs baseline | δ | literature |"]
    md.append("|---|---|---|---|")
    for c in rows:
        base = c.get("baseline", claim.baseline)
        margin = c.get("margin", c.get("max_cost", "—"))
        md.append(f"| `{c['check']}` | {c['arm']} vs {base} | {margin} | {c['literature']} |")
    return md + [""]
