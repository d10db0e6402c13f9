"""``archlab bench``: the machine's matmul peak, training throughput and MFU (archlab's real
training path vs a minimal hand-written loop, interleaved in one process), start-up time to the
first optimizer step, KV-cache decode speed and KV bytes per token. Prints a table, writes JSON.

    archlab bench                       # full run (a few minutes on 2 idle cores)
    archlab bench --quick               # CI-sized (< ~1 min)
    archlab bench --sizes tiny,small --archs default,gpt2 --out bench.json

Noise: every timing is a median over repeats, the two training paths alternate in rounds of
``--steps`` steps (so a load change hits both), and the load average is recorded next to the
numbers. MFU = model FLOPs per token (causal attention, ``model/flops.py``) × tokens/s ÷ the
fp32 matmul peak measured in the same process; the model FLOPs never exceed the executed ones.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from archlab.runs.machine import machine

SIZES = {  # name → (overrides, batch size); batch sizes keep a step ≲ 1 s on 2 cores
    "tiny": (["model/size=tiny"], 16),
    "small": (["model/size=small"], 16),
    "medium": (["model/size=medium"], 4),
    "d512": (["model/size=medium", "model.d_model=512", "model.n_heads=8", "model.n_layers=4"], 4),
}
ARCHS = {"default": [], "gpt2": ["model/arch=gpt2"]}


# ---------------------------------------------------------------------- machine


def load() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def matmul_peak(dtype_name: str = "float32", sizes=(256, 512, 1024), reps: int = 5) -> dict:
    """FLOP/s of an n×n @ n×n matmul: median of ``reps`` timings per size, best size wins."""
    import torch

    dtype = getattr(torch, dtype_name)
    per_size = {}
    for n in sizes:
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        inner = max(1, int(2e9 // (2 * n**3)))  # ~2 GFLOP per timing
        a @ b
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            for _ in range(inner):
                a @ b
            times.append((time.perf_counter() - t) / inner)
        per_size[n] = 2 * n**3 / statistics.median(times)
    best = max(per_size, key=per_size.get)
    return {
        "dtype": dtype_name,
        "flops": per_size[best],
        "best_n": best,
        "per_size": {str(k): v for k, v in per_size.items()},
    }


# ---------------------------------------------------------------------- configs


def bench_config(size: str, arch: str, threads: int, steps: int):
    from archlab.compose import compose

    overrides, batch = SIZES[size]
    return compose(
        [
            *ARCHS[arch],
            *overrides,
            "logger=none",
            f"train.batch_size={batch}",
            f"train.max_steps={steps}",
            f"trainer.threads={threads}",
            "trainer=cpu",
            "data.val_windows=2",
        ]
    )


# ---------------------------------------------------------------------- training throughput


class _StepClock:
    """Wall time between consecutive ``on_train_batch_end`` calls: everything a step costs in
    archlab's loop (data, forward, backward, clip, AdamW, scheduler, logging, callbacks)."""

    def __init__(self):
        from lightning.pytorch.callbacks import Callback

        clock = self

        class _CB(Callback):
            def on_train_batch_end(self, *args, **kwargs):
                clock.marks.append(time.perf_counter())

        self.marks: list[float] = []
        self.callback = _CB()

    def intervals(self) -> list[float]:
        return [b - a for a, b in zip(self.marks, self.marks[1:])]


def archlab_round(cfg, steps: int, run_dir: Path) -> list[float]:
    """Per-step seconds of archlab's real training path (``train.run.train``: data, LitLM,
    Lightning Trainer, run record, divergence stop, telemetry), steps 2..steps."""
    import dataclasses

    from archlab.train import run

    clock = _StepClock()
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, max_steps=steps))
    run.train(cfg, run.Job(run_dir=run_dir, overrides=["bench"]), callbacks=(clock.callback,))
    return clock.intervals()


def hand_round(model, opt, batches, steps: int) -> list[float]:
    """Per-step seconds of a minimal loop: forward, cross-entropy, backward, clip, AdamW."""
    import torch
    import torch.nn.functional as F

    marks = []
    for i in range(steps):
        x, y = batches[i % len(batches)]
        logits = model(x)
        loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), y.view(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        marks.append(time.perf_counter())
    return [b - a for a, b in zip(marks, marks[1:])]


def train_throughput(
    size: str, arch: str, rounds: int, steps: int, threads: int, peak: float, work: Path
) -> dict:
    import dataclasses

    import torch

    from archlab.model import Transformer
    from archlab.model.flops import param_count, train_flops_per_token

    cfg = bench_config(size, arch, threads, steps)
    m = dataclasses.replace(cfg.model, vocab_size=256)  # the byte tokenizer's padded vocab
    B, T = cfg.train.batch_size, m.block_size
    torch.manual_seed(0)
    model = Transformer(m)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    g = torch.Generator().manual_seed(0)
    batches = [
        (torch.randint(0, 256, (B, T), generator=g), torch.randint(0, 256, (B, T), generator=g))
        for _ in range(4)
    ]
    tokens = B * T
    model_flops = train_flops_per_token(m, T)  # causal: what the MFU counts
    executed = train_flops_per_token(m, T, attention="dense")
    ours, hand, loads, mfus, ratios = [], [], [], {"archlab": [], "hand": []}, []
    for r in range(rounds):  # alternate, so load changes hit both paths
        torch.set_num_threads(threads)
        a = archlab_round(cfg, steps, work / f"{size}-{arch}-{r}")
        torch.set_num_threads(threads)
        h = hand_round(model, opt, batches, steps)
        # the peak, re-measured each round: MFU against the machine as loaded right now
        p = matmul_peak("float32", (512,), 3)["flops"]
        for name, times in (("archlab", a), ("hand", h)):
            mfus[name].append(model_flops * tokens / statistics.median(times) / p)
        ratios.append(statistics.median(h) / statistics.median(a))
        ours, hand = ours + a, hand + h
        loads.append(load()[0] if load() else None)
    t_ours, t_hand = statistics.median(ours), statistics.median(hand)
    return {
        "size": size,
        "arch": arch,
        "params": param_count(m),
        "n_layers": m.n_layers,
        "d_model": m.d_model,
        "batch": B,
        "seq_len": T,
        "threads": threads,
        "flops_per_token": model_flops,
        "executed_flops_per_token": executed,
        "archlab_tok_s": tokens / t_ours,
        "hand_tok_s": tokens / t_hand,
        # archlab throughput ÷ hand-written throughput: median over rounds of the per-round
        # ratio (both paths of a round ran back to back, so a load change cancels out)
        "ratio": statistics.median(ratios),
        "ratio_rounds": ratios,
        "gap_ms_per_step": 1e3 * (t_ours - t_hand),
        # median over rounds of (model FLOP/s ÷ that round's fp32 peak), clamped to ≤ 1 (flagged)
        "archlab_mfu": min(1.0, statistics.median(mfus["archlab"])),
        "hand_mfu": min(1.0, statistics.median(mfus["hand"])),
        "mfu_clamped": max(mfus["archlab"] + mfus["hand"]) > 1,
        "archlab_mfu_vs_start_peak": model_flops * tokens / t_ours / peak,
        "archlab_mfu_rounds": mfus["archlab"],
        "hand_mfu_rounds": mfus["hand"],
        "archlab_step_s": ours,
        "hand_step_s": hand,
        "load1": loads,
    }


# ---------------------------------------------------------------------- start-up


def startup(runs: int, work: Path) -> dict:
    """Seconds from launching ``archlab train model/size=tiny logger=none train.max_steps=1`` to
    its first optimizer step (summary.json startup_sec), with and without lean imports,
    alternating; also whether heavy optional packages were imported."""
    out: dict = {"lean": [], "stock": [], "load1": []}
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]
        ),
    }
    for i in range(runs):
        for mode in ("lean", "stock"):
            run_dir = work / f"startup-{mode}-{i}"
            env["ARCHLAB_LEAN_IMPORTS"] = "1" if mode == "lean" else "0"
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "archlab",
                    "train",
                    "model/size=tiny",
                    "logger=none",
                    "train.max_steps=1",
                    "data.val_windows=2",
                    f"hydra.run.dir={run_dir}",
                ],
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
                check=True,
            )
            summary = json.loads((run_dir / "summary.json").read_text())
            out[mode].append(summary["startup_sec"])
        out["load1"].append(load()[0] if load() else None)
    out["lean_median"] = statistics.median(out["lean"])
    out["stock_median"] = statistics.median(out["stock"])
    return out


# ---------------------------------------------------------------------- decode


def decode(
    d_model: int, n_layers: int, checkpoints: list[int], threads: int, prompt: int = 16
) -> dict:
    """Greedy decode with the KV cache vs recomputing the whole prefix per token; cumulative
    time at each checkpoint (tokens generated). Both must produce the same tokens."""
    import torch

    from archlab.config import ModelConfig
    from archlab.model import Transformer
    from archlab.model.cache import KVCache

    torch.set_num_threads(threads)
    n = max(checkpoints)
    cfg = ModelConfig(
        n_layers=n_layers,
        d_model=d_model,
        n_heads=max(1, d_model // 64),
        block_size=prompt + n,
        vocab_size=256,
    )
    torch.manual_seed(0)
    model = Transformer(cfg).eval()
    idx = torch.randint(0, 256, (1, prompt), generator=torch.Generator().manual_seed(0))

    def run(cached: bool):
        seq, marks = idx, []
        t = time.perf_counter()
        with torch.no_grad():
            cache = KVCache(n_layers, capacity=prompt + n) if cached else None
            logits = model(seq, cache)[:, -1]
            for i in range(n):
                nxt = logits.argmax(-1, keepdim=True)
                seq = torch.cat([seq, nxt], 1)
                marks.append(time.perf_counter() - t)
                if i + 1 < n:
                    logits = (model(nxt, cache) if cached else model(seq))[:, -1]
        return seq, {c: marks[c - 1] for c in checkpoints}

    out_c, t_c = run(True)
    out_r, t_r = run(False)
    return {
        "d_model": d_model,
        "n_layers": n_layers,
        "prompt": prompt,
        "same_tokens": bool(torch.equal(out_c, out_r)),
        "load1": load()[0] if load() else None,
        # speedup: total time to generate c tokens; marginal: tokens since the previous checkpoint
        "points": [
            {
                "generated": c,
                "cached_tok_s": c / t_c[c],
                "recompute_tok_s": c / t_r[c],
                "speedup": t_r[c] / t_c[c],
                "marginal_speedup": (t_r[c] - t_r.get(p, 0.0)) / (t_c[c] - t_c.get(p, 0.0)),
            }
            for p, c in zip([0, *checkpoints], checkpoints)
        ],
    }


def kv_bytes(d_model: int = 256, n_layers: int = 4, n_heads: int = 8, tokens: int = 40) -> list:
    """KV bytes per token, closed form vs the cache tensors' nbytes after decoding."""
    import torch

    from archlab.config import ModelConfig
    from archlab.model import Transformer
    from archlab.model.cache import KVCache, kv_bytes_per_token

    rows = []
    for name, kv in (("mha", n_heads), ("gqa", 2), ("mqa", 1)):
        cfg = ModelConfig(
            n_layers=n_layers,
            d_model=d_model,
            n_heads=n_heads,
            n_kv_heads=kv,
            attention=name,
            block_size=tokens,
            vocab_size=256,
        )
        model = Transformer(cfg).eval()
        cache = KVCache(n_layers, capacity=tokens)
        with torch.no_grad():
            model(torch.randint(0, 256, (1, tokens // 2)), cache)
            for _ in range(tokens - tokens // 2):
                model(torch.randint(0, 256, (1, 1)), cache)
        measured = sum(k.nbytes + v.nbytes for k, v in zip(cache.k, cache.v)) / cache.seen
        rows.append(
            {
                "attention": name,
                "n_kv_heads": kv,
                "formula": kv_bytes_per_token(cfg),
                "measured": measured,
                "allocated": cache.allocated_bytes() / cache.seen,
            }
        )
    return rows


# ---------------------------------------------------------------------- compile


def compile_speedup(threads: int, steps: int, work: Path) -> dict:
    """archlab's training path with trainer.compile=true vs eager (tiny), steady-state step
    time (the first steps, which compile, are dropped)."""
    import dataclasses

    import torch

    out = {}
    for flag in (False, True):
        cfg = bench_config("tiny", "default", threads, steps)
        cfg = dataclasses.replace(cfg, trainer=dataclasses.replace(cfg.trainer, compile=flag))
        torch.set_num_threads(threads)
        t = time.perf_counter()
        steps_s = archlab_round(cfg, steps, work / f"compile-{flag}")
        out["compiled" if flag else "eager"] = {
            "step_s": statistics.median(steps_s[steps // 2 :]),
            "wall_s": time.perf_counter() - t,
        }
    out["speedup"] = out["eager"]["step_s"] / out["compiled"]["step_s"]
    out["load1"] = load()[0] if load() else None
    return out


# ---------------------------------------------------------------------- report


def table(res: dict) -> str:
    m, lines = res["machine"], []
    lines.append(
        f"archlab bench · {m['date']} · {m['cpu']} · {m['cores']} cores · "
        f"torch {m['torch']} · threads {res['threads']} · load avg "
        f"{res['load_start']} → {res['load_end']}"
    )
    p = res["peak"]
    lines.append(
        f"matmul peak fp32 {p['float32']['flops'] / 1e9:.1f} GFLOP/s (n={p['float32']['best_n']})"
        + (f" · bf16 {p['bfloat16']['flops'] / 1e9:.1f} GFLOP/s" if "bfloat16" in p else "")
    )
    lines += [
        "",
        "| size | arch | params | B×T | archlab tok/s | hand tok/s | ratio | gap ms/step | "
        "archlab MFU | hand MFU | load1 |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in res["train"]:
        lines.append(
            f"| {r['size']} | {r['arch']} | {r['params'] / 1e6:.2f}M | {r['batch']}×{r['seq_len']} | "
            f"{r['archlab_tok_s']:,.0f} | {r['hand_tok_s']:,.0f} | {r['ratio']:.3f} | "
            f"{r['gap_ms_per_step']:+.1f} | "
            f"{100 * r['archlab_mfu']:.1f}% | {100 * r['hand_mfu']:.1f}% | "
            f"{'/'.join(str(x) for x in r['load1'])} |"
        )
    if res.get("startup"):
        s = res["startup"]
        lines += [
            "",
            f"start-up to first optimizer step (tiny, logger=none): lean imports "
            f"{s['lean_median']:.2f} s {s['lean']} · stock {s['stock_median']:.2f} s "
            f"{s['stock']} · load1 {s['load1']}",
        ]
    if res.get("decode"):
        d = res["decode"]
        lines += [
            "",
            f"decode (d={d['d_model']}, {d['n_layers']} layers, prompt {d['prompt']}, "
            f"greedy, same tokens: {d['same_tokens']}, load1 {d['load1']}):",
            "| generated | KV cache tok/s | recompute tok/s | speedup (total) | "
            "speedup (tokens since previous row) |",
            "|---:|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {p['generated']} | {p['cached_tok_s']:,.0f} | {p['recompute_tok_s']:,.0f} | "
            f"{p['speedup']:.1f}× | {p['marginal_speedup']:.1f}× |"
            for p in d["points"]
        ]
    if res.get("kv_bytes"):
        lines += [
            "",
            "KV bytes/token: "
            + ", ".join(
                f"{r['attention']} (kv heads {r['n_kv_heads']}) {r['formula']} formula / "
                f"{r['measured']:.0f} measured ({r.get('allocated', 0):.0f} allocated)"
                for r in res["kv_bytes"]
            ),
        ]
    if res.get("compile"):
        c = res["compile"]
        lines += [
            "",
            f"trainer.compile=true (tiny): step {c['compiled']['step_s'] * 1e3:.1f} ms vs "
            f"eager {c['eager']['step_s'] * 1e3:.1f} ms → speedup {c['speedup']:.2f}× "
            f"(compiled run wall {c['compiled']['wall_s']:.0f} s incl. compilation; load1 {c['load1']})",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="archlab bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="tiny,small,medium,d512")
    ap.add_argument("--archs", default="default,gpt2")
    ap.add_argument("--quick", action="store_true", help="CI-sized run (< ~1 min)")
    ap.add_argument("--out", default="bench.json")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds per size")
    ap.add_argument("--steps", type=int, default=None, help="steps per round and path")
    ap.add_argument("--startup-runs", type=int, default=None)
    ap.add_argument("--no-startup", action="store_true")
    ap.add_argument("--no-decode", action="store_true")
    ap.add_argument("--compile", action="store_true", help="also time trainer.compile=true")
    args = ap.parse_args(argv)

    import logging
    import warnings

    import torch

    os.environ.setdefault("CI", "1")  # no progress bar inside the timed loop
    logging.getLogger("archlab").setLevel(logging.ERROR)
    logging.getLogger("lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    threads = args.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    quick = args.quick
    sizes = ["tiny"] if quick and args.sizes == ap.get_default("sizes") else args.sizes.split(",")
    archs = (
        ["default"] if quick and args.archs == ap.get_default("archs") else args.archs.split(",")
    )
    rounds = args.rounds or (2 if quick else 3)
    steps = args.steps or (6 if quick else 8)
    for s in sizes:
        if s not in SIZES:
            raise SystemExit(f"archlab bench: unknown size {s!r}; choose among {', '.join(SIZES)}")
    for a in archs:
        if a not in ARCHS:
            raise SystemExit(f"archlab bench: unknown arch {a!r}; choose among {', '.join(ARCHS)}")

    res: dict = {
        "machine": {**machine(), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")},
        "threads": threads,
        "load_start": load(),
        "quick": quick,
    }
    with tempfile.TemporaryDirectory(prefix="archlab-bench-") as tmp:
        work = Path(tmp)
        res["peak"] = {
            "float32": matmul_peak(
                "float32", (256, 512) if quick else (256, 512, 1024), 3 if quick else 5
            )
        }
        res["peak"]["bfloat16"] = matmul_peak("bfloat16", (256,) if quick else (512,), 3)
        peak = res["peak"]["float32"]["flops"]
        res["train"] = []
        for size in sizes:
            for arch in archs:
                r = train_throughput(size, arch, rounds, steps, threads, peak, work)
                res["train"].append(r)
                print(
                    f"  {size}/{arch}: archlab {r['archlab_tok_s']:,.0f} tok/s, hand "
                    f"{r['hand_tok_s']:,.0f} tok/s, ratio {r['ratio']:.3f}, MFU "
                    f"{100 * r['archlab_mfu']:.1f}%",
                    file=sys.stderr,
                    flush=True,
                )
        if not args.no_startup:
            res["startup"] = startup(args.startup_runs or (1 if quick else 3), work)
        if not args.no_decode:
            res["decode"] = (
                decode(128, 2, [32, 64], threads)
                if quick
                else decode(256, 4, [128, 256, 512], threads)
            )
            res["kv_bytes"] = kv_bytes()
        if args.compile:
            res["compile"] = compile_speedup(threads, 12 if quick else 30, work)
    res["load_end"] = load()
    text = table(res)
    print(text)
    res["table"] = text
    Path(args.out).write_text(json.dumps(res, indent=1, default=str))
    print(f"\nwrote {args.out}", file=sys.stderr)
    return 0
