"""Micro-benchmarks a claim can ask for (``benchmark: [norm_ops]``), run by ``archlab reproduce``
after its sweep and shown in its report. Timing on a shared CPU is noisy: every benchmark
interleaves its candidates and reports the median of repeated measurements with the spread.
"""

from __future__ import annotations

import statistics
import time


def norm_ops(smoke: bool = False) -> dict:
    """Forward+backward time of archlab's LayerNorm vs RMSNorm (model/norm.py), 1 thread, fp32,
    on activations of the claim's shape (16×64 tokens × d=64) and a wider one (d=512)."""
    import torch  # torch: only when the benchmark runs (the registry imports this module)

    from archlab.model.norm import NORMS  # (as above)

    torch.set_num_threads(1)
    reps, rounds = (3, 2) if smoke else (50, 11)
    rows = []
    for d in (64, 512):
        x0 = torch.randn(16 * 64, d)
        mods = {name: NORMS[name](d) for name in ("layernorm", "rmsnorm")}
        times: dict[str, list[float]] = {name: [] for name in mods}
        for _ in range(rounds):
            for name, mod in mods.items():  # interleaved: load changes hit both
                x = x0.clone().requires_grad_(True)
                start = time.perf_counter()
                for _ in range(reps):
                    mod(x).sum().backward()
                times[name].append((time.perf_counter() - start) / reps * 1e6)
        med = {n: statistics.median(t) for n, t in times.items()}
        ratios = sorted(a / b for a, b in zip(times["layernorm"], times["rmsnorm"]))
        rows.append(
            {
                "d_model": d,
                "tokens": 16 * 64,
                "layernorm_us": med["layernorm"],
                "rmsnorm_us": med["rmsnorm"],
                "speedup_median": statistics.median(ratios),
                "speedup_range": [ratios[0], ratios[-1]],
            }
        )
    return {"name": "norm_ops", "unit": "µs per forward+backward", "threads": 1, "rows": rows}


def to_markdown(result: dict) -> list[str]:
    if result.get("name") == "norm_ops":
        md = [
            f"Norm-op time ({result['unit']}, {result['threads']} thread, median of interleaved "
            "rounds; speed-up = LayerNorm time / RMSNorm time per round):",
            "",
            "| d_model | tokens | LayerNorm µs | RMSNorm µs | speed-up (median) | range |",
            "|---|---|---|---|---|---|",
        ]
        for r in result["rows"]:
            md.append(
                f"| {r['d_model']} | {r['tokens']} | {r['layernorm_us']:.1f} | "
                f"{r['rmsnorm_us']:.1f} | {r['speedup_median']:.2f}× | "
                f"{r['speedup_range'][0]:.2f}–{r['speedup_range'][1]:.2f}× |"
            )
        return md + [""]
    return [f"`{result}`", ""]


BENCHMARKS = {"norm_ops": norm_ops}
