"""Micro-benchmarks for ``archlab bench`` (issue #18): speed claims measured on the layer itself,
not from noisy end-to-end tokens/s.

* **norm**: forward + backward of ``F.layer_norm`` (archlab's ``LayerNorm``, no bias) against
  ``F.rms_norm``, archlab's ``RMSNorm`` module as the model builds it, and (optionally) that
  module under ``torch.compile``, on a (batch, T, d_model) activation.
* **block**: forward + backward of one serial block against one parallel block
  (``model/block``) at the same shape, and the input projections a parallel block could fuse:
  ``attn.qkv`` and ``mlp.fc`` as two GEMMs vs one GEMM over their concatenated weights.

Every variant runs once per round, rounds interleaved in one process (a load change hits all
of them); per round each variant's time is divided into the baseline's, and the report is the
median and min–max of these per-round speedups (> 1: faster than the baseline).
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable

NOT_FUSED = (
    "archlab's parallel block does not fuse its input projections (attn.qkv and mlp.fc are "
    "separate GEMMs): speed not measurable as a gain on this CPU without a fused projection"
)


def spread(xs: list[float]) -> dict:
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "rounds": xs}


def time_fwd_bwd(step: Callable[[], None], seconds: float) -> float:
    """Seconds per call of ``step`` (a forward + backward), over a loop of ~``seconds``."""
    step()  # warm-up (allocations, lazy init)
    t = time.perf_counter()
    step()
    reps = max(3, int(seconds / max(time.perf_counter() - t, 1e-6)))
    t = time.perf_counter()
    for _ in range(reps):
        step()
    return (time.perf_counter() - t) / reps


def interleaved(steps: dict[str, Callable[[], None]], rounds: int, seconds: float) -> dict:
    """Per-round seconds of every step; speedups vs the first (the baseline), per round."""
    names = list(steps)
    times: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(rounds):
        for n in names:
            times[n].append(time_fwd_bwd(steps[n], seconds))
    base = times[names[0]]
    return {
        "baseline": names[0],
        "ms": {n: 1e3 * statistics.median(t) for n, t in times.items()},
        "speedup": {n: spread([b / x for b, x in zip(base, t)]) for n, t in times.items()},
    }


def fwd_bwd(fn, x, *args, params=None) -> Callable[[], None]:
    """One forward + backward of ``fn(x, *args)``: gradients into x and ``params`` (a module's
    own parameters by default), cleared after each call as an optimizer step would."""
    import torch

    params = list(fn.parameters()) if params is None else list(params)
    grad = None

    def step():
        nonlocal grad
        out = fn(x, *args)
        grad = grad if grad is not None else torch.ones_like(out)
        out.backward(grad)
        for t in (x, *params):
            t.grad = None

    return step


def split_or_fused(layers, x, fused: bool) -> Callable[[], None]:
    """Forward + backward of ``layers`` (Linear maps of the same input): each as its own GEMM,
    or (``fused``) one GEMM over their concatenated weights, its output split by views."""
    import torch

    if fused:  # a real block would split the output by views (free)
        return fwd_bwd(fuse(layers), x)
    params = [p for f in layers for p in f.parameters()]
    grads = None

    def step():
        nonlocal grads
        outs = [f(x) for f in layers]
        grads = grads or [torch.ones_like(o) for o in outs]
        torch.autograd.backward(outs, grads)
        for t in (x, *params):
            t.grad = None

    return step


def fuse(layers):
    """One Linear computing every one of ``layers`` (same input) at once: their weights (and
    biases) stacked, so its output is theirs concatenated."""
    import torch

    one = torch.nn.Linear(layers[0].in_features, sum(f.out_features for f in layers))
    with torch.no_grad():
        one.weight.copy_(torch.cat([f.weight for f in layers]))
        if layers[0].bias is None:
            one.bias = None
        else:
            one.bias.copy_(torch.cat([f.bias for f in layers]))
    return one


def norm_bench(shape: tuple[int, int, int], rounds: int, seconds: float, compiled: bool) -> dict:
    """LayerNorm vs RMSNorm, forward + backward at ``shape``; the compiled module if asked."""
    import torch
    import torch.nn.functional as F

    from archlab.model.norm import LayerNorm, RMSNorm

    B, T, d = shape
    g = torch.Generator().manual_seed(0)
    x = torch.randn(B, T, d, generator=g).requires_grad_()
    w = torch.ones(d, requires_grad=True)
    steps = {
        "F.layer_norm": fwd_bwd(lambda t: F.layer_norm(t, (d,), w, None, 1e-5), x, params=[w]),
        "archlab LayerNorm": fwd_bwd(LayerNorm(d), x),
        "F.rms_norm": fwd_bwd(lambda t: F.rms_norm(t, (d,), w, 1e-5), x, params=[w]),
        "archlab RMSNorm": fwd_bwd(RMSNorm(d), x),
    }
    out: dict = {"shape": list(shape)}
    if compiled:
        t = time.perf_counter()
        try:
            module = torch.compile(RMSNorm(d))
            fwd_bwd(module, x)()  # compile outside the timed rounds
            steps["compiled RMSNorm"] = fwd_bwd(module, x)
            out["compile_s"] = time.perf_counter() - t
        except Exception as e:  # no C++ toolchain, an unsupported platform: say so, go on
            out["compile_error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
    return out | interleaved(steps, rounds, seconds)


def block_bench(cfg, batch: int, rounds: int, seconds: float) -> dict:
    """One serial vs one parallel block (forward + backward) of ``cfg``'s model at its
    block_size, and the two input GEMMs of a parallel block vs one fused GEMM."""
    import torch

    from archlab.model import Transformer

    m = dataclasses.replace(cfg.model, resid_dropout=0.0, attn_dropout=0.0)
    T, d = m.block_size, m.d_model
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, T, d, generator=g).requires_grad_()
    pos = torch.arange(T)
    steps, blocks = {}, {}
    for kind in ("serial", "parallel"):
        torch.manual_seed(0)
        model = Transformer(dataclasses.replace(m, block=kind)).train()
        model.position.extend(T)
        blocks[kind] = model.blocks[0]
        steps[kind] = fwd_bwd(blocks[kind], x, pos, model.layer_positions[0])
    par = blocks["parallel"]
    res = interleaved(steps, rounds, seconds)
    h = torch.randn(batch, T, d, generator=g).requires_grad_()
    layers = [par.attn.qkv, par.mlp.fc]
    proj = interleaved(
        {
            "two GEMMs (qkv, fc)": split_or_fused(layers, h, fused=False),
            "one fused GEMM": split_or_fused(layers, h, fused=True),
        },
        rounds,
        seconds,
    )
    fusable = proj["ms"]["two GEMMs (qkv, fc)"] - proj["ms"]["one fused GEMM"]
    return {
        "shape": [batch, T, d],
        "mlp": m.mlp,
        "norm": m.norm,
        "fused_projection": is_fused(par),
        "note": None if is_fused(par) else NOT_FUSED,
        **res,
        "projection": proj,
        # what fusing could save, as a share of the parallel block's forward + backward
        "fusion_ceiling": fusable / res["ms"]["parallel"],
    }


def is_fused(block) -> bool:
    """Whether a block computes attention's q/k/v and the MLP's input in one GEMM."""
    import torch

    attn_in = getattr(getattr(block, "attn", None), "qkv", None)
    mlp_in = getattr(getattr(block, "mlp", None), "fc", None)
    return not (isinstance(attn_in, torch.nn.Linear) and isinstance(mlp_in, torch.nn.Linear))


# ---------------------------------------------------------------------- tables


def _x(x: dict) -> str:
    return f"{x['median']:.2f}× ({x['min']:.2f}–{x['max']:.2f})"


def norm_lines(rows: list[dict], rounds: int) -> list[str]:
    """Markdown table of :func:`norm_bench` results, one row per (named) shape."""
    names = list(rows[0]["ms"])
    lines = [
        f"Norms, forward + backward of one (batch, T, d) activation: ms, and speedup vs "
        f"{rows[0]['baseline']} (median, min–max of {rounds} interleaved rounds; "
        "> 1 is faster):",
        "",
        "| size (B, T, d) | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for r in rows:
        cells = [f"{r['ms'][n]:.3f} ms · {_x(r['speedup'][n])}" for n in names]
        lines.append(f"| {r['size']} {tuple(r['shape'])} | " + " | ".join(cells) + " |")
    for r in rows:
        if r.get("compile_error"):
            lines.append(f"\ncompiled RMSNorm at {r['size']}: not measured ({r['compile_error']})")
    return lines + [""]


def block_lines(rows: list[dict]) -> list[str]:
    """Markdown table of :func:`block_bench` results, one row per (named) shape."""
    lines = [
        "Blocks, forward + backward of one block (speedup vs serial), and the parallel block's "
        "two input GEMMs (`attn.qkv`, `mlp.fc`) vs one fused GEMM over both:",
        "",
        "| size (B, T, d) | mlp, norm | serial ms | parallel ms | parallel vs serial | "
        "two GEMMs ms | fused GEMM ms | fused vs two | fusion ceiling (% of block) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        p = r["projection"]
        two, one = p["ms"]["two GEMMs (qkv, fc)"], p["ms"]["one fused GEMM"]
        lines.append(
            f"| {r['size']} {tuple(r['shape'])} | {r['mlp']}, {r['norm']} | "
            f"{r['ms']['serial']:.2f} | {r['ms']['parallel']:.2f} | "
            f"{_x(r['speedup']['parallel'])} | {two:.2f} | {one:.2f} | "
            f"{_x(p['speedup']['one fused GEMM'])} | {100 * r['fusion_ceiling']:.1f}% |"
        )
    notes = {r["note"] for r in rows if r.get("note")}
    return [*lines, "", *(f"{n}." for n in sorted(notes)), ""]
