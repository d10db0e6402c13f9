"""``archlab bench``: the machine's matmul peak; training throughput and MFU of archlab's real
training path, of a minimal hand-written loop on archlab's model, and of the same loop on an
independent reference model (Hugging Face ``GPT2LMHeadModel`` / ``LlamaForCausalLM`` built
from their config classes, SDPA attention, no download), interleaved in one process; start-up
time to the first optimizer step; ``trainer.compile`` speedup; KV-cache decode speed and KV
bytes per token; micro-benchmarks of the norm and the block layout (:mod:`archlab.microbench`,
``--no-micro`` skips them). Prints a table, writes JSON; ``--docs`` regenerates docs/bench.md and the
README's performance table from that JSON (``--render bench.json`` does it without a run).

    archlab bench --docs                # full run (~15 min on 2 idle cores) → bench.json + docs
    archlab bench --quick               # CI-sized (< ~1 min)
    archlab bench --render bench.json   # docs/bench.md + README table from an earlier run
    archlab bench --data                # token-store builds instead (archlab.data.buildbench)

Two ratios per size and arch, each the median over rounds of the per-round ratio (the three
paths of a round run back to back, so a load change hits all of them; spread = min–max):
**framework** = archlab end-to-end tok/s ÷ hand loop on archlab's model (Lightning, data,
logging, callbacks), **model** = archlab's model ÷ the reference model, both in the hand loop.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from archlab import microbench
from archlab.runs.machine import machine


@dataclasses.dataclass(frozen=True)
class Size:
    overrides: tuple[str, ...]
    batch: int
    label: str
    text: bool = False  # char-level Tiny Shakespeare (needs --text), else the byte default


TEXT_DEFAULT = "../shared/data/tinyshakespeare.txt"
SIZES = {
    # the classic CPU configuration of minimal GPT implementations (char-level Shakespeare)
    "classic": Size(("model/size=small", "model.block_size=64"), 12, "4L d128 T64 B12 char", True),
    # this project's standard ablation rung
    "rung": Size(("model/size=small",), 16, "4L d128 T128 B16 byte"),
    "large": Size(
        (
            "model/size=small",
            "model.n_layers=6",
            "model.d_model=384",
            "model.n_heads=6",
            "model.block_size=256",
        ),
        8,
        "6L d384 T256 B8 byte",
    ),
    "tiny": Size(("model/size=tiny",), 16, "2L d64 T64 B16 byte"),  # --quick
}
ARCHS = {"default": [], "gpt2": ["model/arch=gpt2"]}
REFERENCES = {"default": "llama", "gpt2": "gpt2"}  # arch → archlab.hf converter of its reference
NO_DROPOUT = ("model.embed_dropout=0", "model.attn_dropout=0", "model.resid_dropout=0")


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


def bench_config(size: str, arch: str, threads: int, steps: int, text: str = TEXT_DEFAULT):
    from archlab.compose import compose

    sz = SIZES[size]
    data = ["data=text", f"data.path={text}", "tokenizer=char"] if sz.text else []
    return compose(
        [
            *ARCHS[arch],
            *sz.overrides,
            *data,
            *NO_DROPOUT,
            "logger=none",
            f"train.batch_size={sz.batch}",
            f"train.max_steps={steps}",
            f"trainer.threads={threads}",
            "trainer=cpu",
            "data.val_windows=2",
        ]
    )


# ---------------------------------------------------------------------- training throughput


class _StepClock:
    """Wall time between consecutive ``on_train_batch_end`` calls: everything a step costs in
    archlab's loop (data, forward, backward, clip, AdamW, scheduler, logging, callbacks); and
    from ``on_train_start`` to the first step's end (which includes any compilation)."""

    def __init__(self):
        from lightning.pytorch.callbacks import Callback

        clock = self

        class _CB(Callback):
            def on_train_start(self, *args, **kwargs):
                clock.start = time.perf_counter()

            def on_train_batch_end(self, *args, **kwargs):
                clock.marks.append(time.perf_counter())

        self.marks: list[float] = []
        self.start: float | None = None
        self.callback = _CB()

    def intervals(self) -> list[float]:
        return [b - a for a, b in zip(self.marks, self.marks[1:])]


def archlab_round(cfg, steps: int, run_dir: Path, clock: _StepClock | None = None) -> list[float]:
    """Per-step seconds of archlab's real training path (``train.run.train``: data, LitLM,
    Lightning Trainer, run record, divergence stop, telemetry), steps 2..steps."""
    from archlab.train import run

    clock = clock or _StepClock()
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, max_steps=steps))
    run.train(cfg, run.Job(run_dir=run_dir, overrides=["bench"]), callbacks=(clock.callback,))
    return clock.intervals()


def hand_round(model, opt, batches, steps: int) -> list[float]:
    """Per-step seconds of a minimal loop: forward, cross-entropy, backward, clip, AdamW (the
    same loop for archlab's model and the reference; an HF model's output has ``.logits``)."""
    import torch
    import torch.nn.functional as F

    marks = []
    for i in range(steps):
        x, y = batches[i % len(batches)]
        out = model(x)
        logits = getattr(out, "logits", out)
        loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), y.view(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        marks.append(time.perf_counter())
    return [b - a for a, b in zip(marks, marks[1:])]


def reference_model(m, arch: str, vocab: int):
    """The independent reference at archlab's shape: transformers' own model class for the
    arch's family (GPT-2 or Llama), from its config class (random init, no download, SDPA),
    with the tokenizer's true vocabulary (archlab pads its own to a multiple of 64)."""
    import transformers

    from archlab.hf import CONVERTERS

    conv = CONVERTERS[REFERENCES[arch]]
    cls = getattr(transformers, conv.hf_class)
    kw = conv.hf_config(dataclasses.replace(m, arch=REFERENCES[arch])) | {"vocab_size": vocab}
    return cls(cls.config_class(**kw, attn_implementation="sdpa")).train()


def _vocabs(cfg) -> tuple[int, int]:
    """(tokenizer vocab, archlab's padded model vocab) of the run's data."""
    from archlab.data.store import load_tokens

    data = load_tokens(cfg.data, cfg.tokenizer)
    return data.vocab_size, data.model_vocab_size


def _hand_setup(model, vocab: int, B: int, T: int):
    import torch

    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    g = torch.Generator().manual_seed(0)
    batches = [
        (torch.randint(0, vocab, (B, T), generator=g), torch.randint(0, vocab, (B, T), generator=g))
        for _ in range(4)
    ]
    return model, opt, batches


def _spread(xs: list[float]) -> dict:
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "rounds": xs}


def train_throughput(
    size: str, arch: str, rounds: int, steps: int, threads: int, peak: float, work: Path, text: str
) -> dict:
    """Interleaved rounds of archlab end to end, the hand loop on archlab's model and the hand
    loop on the reference model; ratios per round, then median and spread."""
    import torch

    from archlab.model import Transformer
    from archlab.model.flops import param_count, train_flops_per_token

    cfg = bench_config(size, arch, threads, steps, text)
    vocab, padded = _vocabs(cfg)
    m = dataclasses.replace(cfg.model, vocab_size=padded)
    B, T = cfg.train.batch_size, m.block_size
    torch.manual_seed(0)
    paths = {"hand": _hand_setup(Transformer(m), vocab, B, T)}
    torch.manual_seed(0)
    paths["reference"] = _hand_setup(reference_model(m, arch, vocab), vocab, B, T)
    times: dict[str, list[float]] = {"archlab": [], "hand": [], "reference": []}
    per_round: dict[str, list[float]] = {k: [] for k in times}
    framework, model_ratio, mfus, loads = [], [], [], []
    for r in range(rounds):  # alternate, so load changes hit every path
        torch.set_num_threads(threads)
        steps_s = {"archlab": archlab_round(cfg, steps, work / f"{size}-{arch}-{r}")}
        for name, state in paths.items():
            torch.set_num_threads(threads)
            steps_s[name] = hand_round(*state, steps)
        med = {k: statistics.median(v) for k, v in steps_s.items()}
        for k in times:
            times[k] += steps_s[k]
            per_round[k].append(med[k])
        framework.append(med["hand"] / med["archlab"])
        model_ratio.append(med["reference"] / med["hand"])
        p = matmul_peak("float32", (512,), 3)["flops"]  # the machine as loaded right now
        mfus.append(train_flops_per_token(m, T) * B * T / med["archlab"] / p)
        loads.append(load()[0] if load() else None)
    tok_s = {k: B * T / statistics.median(v) for k, v in times.items()}
    return {
        "size": size,
        "label": SIZES[size].label,
        "arch": arch,
        "reference": transformers_class(arch),
        "params": param_count(m),
        "reference_params": sum(p.numel() for p in paths["reference"][0].parameters()),
        "n_layers": m.n_layers,
        "d_model": m.d_model,
        "batch": B,
        "seq_len": T,
        "vocab": vocab,
        "model_vocab": padded,
        "threads": threads,
        "flops_per_token": train_flops_per_token(m, T),
        "executed_flops_per_token": train_flops_per_token(m, T, attention="dense"),
        **{f"{k}_tok_s": v for k, v in tok_s.items()},
        "framework": _spread(framework),  # archlab end to end ÷ hand loop, same model
        "model": _spread(model_ratio),  # archlab's model ÷ reference model, same loop
        "archlab_mfu": min(1.0, statistics.median(mfus)),
        "mfu_clamped": max(mfus) > 1,
        "archlab_mfu_vs_start_peak": train_flops_per_token(m, T) * tok_s["archlab"] / peak,
        "step_s": times,
        "round_median_step_s": per_round,
        "load1": loads,
    }


def transformers_class(arch: str) -> str:
    from archlab.hf import CONVERTERS

    return CONVERTERS[REFERENCES[arch]].hf_class


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
    out["runs"] = runs
    return out


# ---------------------------------------------------------------------- decode


def decode(
    d_model: int, n_layers: int, checkpoints: list[int], threads: int, rounds: int, prompt: int = 16
) -> dict:
    """Greedy decode with the KV cache vs recomputing the whole prefix per token, alternating
    for ``rounds`` rounds; cumulative time at each checkpoint (tokens generated). Both must
    produce the same tokens. Per checkpoint: median (and spread) of the per-round speedups.
    With more than one thread, the cached decode also runs on one thread in each round
    (``points_1_thread``: its speedup over the same ``threads``-thread recomputation): one
    token's ops are too small to split, so this shows what the threads cost or buy there."""
    import torch

    from archlab.config import ModelConfig
    from archlab.model import Transformer
    from archlab.model.cache import KVCache

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

    def run(cached: bool, n_threads: int):
        torch.set_num_threads(n_threads)
        seq, marks = idx, []
        t = time.perf_counter()
        with torch.inference_mode():  # as Transformer.generate
            cache = KVCache(n_layers, capacity=prompt + n) if cached else None
            logits = model(seq, cache)[:, -1]
            for i in range(n):
                nxt = logits.argmax(-1, keepdim=True)
                seq = torch.cat([seq, nxt], 1)
                marks.append(time.perf_counter() - t)
                if i + 1 < n:
                    logits = (model(nxt, cache) if cached else model(seq))[:, -1]
        return seq, {c: marks[c - 1] for c in checkpoints}

    paths = {"cached": (True, threads), "recomputed": (False, threads)}
    if threads > 1:
        paths["cached_1_thread"] = (True, 1)
    times: dict[str, list[dict]] = {name: [] for name in paths}
    same = True
    for _ in range(rounds):
        outs = []
        for name, (cached, n_threads) in paths.items():
            out, marks = run(cached, n_threads)
            outs.append(out)
            times[name].append(marks)
        same = same and all(torch.equal(out, outs[0]) for out in outs)
    torch.set_num_threads(threads)
    res = {
        "d_model": d_model,
        "n_layers": n_layers,
        "prompt": prompt,
        "rounds": rounds,
        "same_tokens": same,
        "load1": load()[0] if load() else None,
        "points": [
            _decode_point(c, p, times["cached"], times["recomputed"])
            for p, c in zip([0, *checkpoints], checkpoints)
        ],
    }
    if "cached_1_thread" in times:
        res["points_1_thread"] = [
            _decode_point(c, p, times["cached_1_thread"], times["recomputed"])
            for p, c in zip([0, *checkpoints], checkpoints)
        ]
    return res


def _decode_point(c: int, prev: int, cached: list[dict], recomputed: list[dict]) -> dict:
    """Speedup: time to generate c tokens; marginal: tokens since the previous checkpoint."""
    total = [r[c] / k[c] for k, r in zip(cached, recomputed)]
    marginal = [
        (r[c] - r.get(prev, 0.0)) / (k[c] - k.get(prev, 0.0)) for k, r in zip(cached, recomputed)
    ]
    return {
        "generated": c,
        "cached_tok_s": c / statistics.median(k[c] for k in cached),
        "recompute_tok_s": c / statistics.median(r[c] for r in recomputed),
        "speedup": statistics.median(total),
        "speedup_spread": _spread(total),
        "marginal_speedup": statistics.median(marginal),
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


def compile_speedup(threads: int, steps: int, work: Path, size: str = "rung") -> dict:
    """archlab's training path with trainer.compile=true vs eager at the standard rung:
    steady-state step time (median of the second half) and the first step's time, which for
    the compiled run includes compilation (inductor's on-disk caches switched off: a cold
    compile, the worst case)."""
    import torch
    import torch._inductor.config as inductor

    inductor.fx_graph_cache = False
    if hasattr(inductor, "autograd_cache"):
        inductor.autograd_cache = False
    out: dict = {"size": size, "label": SIZES[size].label, "steps": steps}
    for flag in (False, True):
        cfg = bench_config(size, "default", threads, steps)
        cfg = dataclasses.replace(cfg, trainer=dataclasses.replace(cfg.trainer, compile=flag))
        torch.set_num_threads(threads)
        clock = _StepClock()
        t = time.perf_counter()
        steps_s = archlab_round(cfg, steps, work / f"compile-{flag}", clock)
        out["compiled" if flag else "eager"] = {
            "step_s": statistics.median(steps_s[steps // 2 :]),
            "first_step_s": clock.marks[0] - clock.start,
            "wall_s": time.perf_counter() - t,
        }
    c, e = out["compiled"], out["eager"]
    out["speedup"] = e["step_s"] / c["step_s"]
    out["compile_s"] = c["first_step_s"] - e["first_step_s"]
    # steps after which the compiled run has caught up with eager (compile time amortised)
    out["break_even_steps"] = out["compile_s"] / max(e["step_s"] - c["step_s"], 1e-9)
    out["load1"] = load()[0] if load() else None
    return out


# ---------------------------------------------------------------------- micro-benchmarks


def micro(threads: int, rounds: int, quick: bool) -> dict:
    """The norm and block micro-benchmarks at the rung's and the large size's shapes (tiny
    with ``--quick``), interleaved rounds of forward + backward in this process."""
    import torch

    torch.set_num_threads(threads)
    sizes = ("tiny",) if quick else ("rung", "large")
    seconds = 0.05 if quick else 0.25  # per variant and round
    out: dict = {"rounds": rounds, "threads": threads, "norm": [], "block": []}
    for size in sizes:
        cfg = bench_config(size, "default", threads, 1)
        shape = (SIZES[size].batch, cfg.model.block_size, cfg.model.d_model)
        norm = microbench.norm_bench(shape, rounds, seconds, compiled=not quick)
        out["norm"].append({"size": size, **norm})
        block = microbench.block_bench(cfg, SIZES[size].batch, rounds, seconds)
        out["block"].append({"size": size, **block})
    return out


# ---------------------------------------------------------------------- report


def _r(x: dict) -> str:
    return f"{x['median']:.3f} ({x['min']:.2f}–{x['max']:.2f})"


def train_table(rows: list[dict]) -> list[str]:
    lines = [
        "| size | arch | reference | params (archlab / ref) | archlab tok/s | hand tok/s | "
        "reference tok/s | framework: archlab ÷ hand | model: archlab ÷ reference | MFU |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['size']} ({r['label']}) | {r['arch']} | {r['reference']} | "
            f"{r['params'] / 1e6:.2f}M / {r['reference_params'] / 1e6:.2f}M | "
            f"{r['archlab_tok_s']:,.0f} | {r['hand_tok_s']:,.0f} | {r['reference_tok_s']:,.0f} | "
            f"{_r(r['framework'])} | {_r(r['model'])} | {100 * r['archlab_mfu']:.1f}% |"
        )
    return lines


def _header(res: dict) -> list[str]:
    m, p = res["machine"], res["peak"]
    return [
        f"archlab bench · {m['date']} · {m['cpu']} · {m['cores']} cores · torch {m['torch']} · "
        f"threads {res['threads']} · rounds {res['rounds']} × {res['steps']} steps · "
        f"load avg {res['load_start']} → {res['load_end']}",
        f"matmul peak fp32 {p['float32']['flops'] / 1e9:.1f} GFLOP/s (n={p['float32']['best_n']})"
        + (f" · bf16 {p['bfloat16']['flops'] / 1e9:.1f} GFLOP/s" if "bfloat16" in p else ""),
    ]


def extras(res: dict) -> list[str]:
    lines = []
    if res.get("startup"):
        s = res["startup"]
        lines += [
            f"Start-up to the first optimizer step (`model/size=tiny`, `logger=none`), median of "
            f"{s['runs']}: **{s['lean_median']:.2f} s** (runs {s['lean']}); without the lean-import "
            f"hook {s['stock_median']:.2f} s.",
            "",
        ]
    if res.get("compile"):
        c = res["compile"]
        lines += [
            f"`trainer.compile=true` at the {c['size']} ({c['label']}): "
            f"{c['compiled']['step_s'] * 1e3:.1f} ms/step vs eager {c['eager']['step_s'] * 1e3:.1f}"
            f" ms → **{c['speedup']:.2f}×**; cold compilation {c['compile_s']:.0f} s, repaid after "
            f"~{c['break_even_steps']:,.0f} steps.",
            "",
        ]
    if res.get("decode"):
        d = res["decode"]
        lines += [
            f"KV-cache decode (d={d['d_model']}, {d['n_layers']} layers, prompt {d['prompt']}, greedy, "
            f"{d['rounds']} interleaved rounds, same tokens: {d['same_tokens']}):",
            "",
            "| generated | KV cache tok/s | recompute tok/s | speedup (median, spread) | "
            "speedup since previous row |",
            "|---:|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {p['generated']} | {p['cached_tok_s']:,.0f} | {p['recompute_tok_s']:,.0f} | "
            f"{_r(p['speedup_spread'])}× | {p['marginal_speedup']:.1f}× |"
            for p in d["points"]
        ]
        lines.append("")
        if d.get("points_1_thread"):
            one = "; ".join(
                f"{p['generated']} tokens {p['cached_tok_s']:,.0f} tok/s, {_r(p['speedup_spread'])}×"
                for p in d["points_1_thread"]
            )
            lines += [
                f"The same KV-cache decode on 1 thread (vs the recomputation above): {one}.",
                "",
            ]
    if res.get("kv_bytes"):
        kv = ", ".join(
            f"{r['attention']} ({r['n_kv_heads']} kv heads) {r['formula']} / {r['measured']:.0f}"
            for r in res["kv_bytes"]
        )
        lines += [f"KV bytes per token, formula / measured: {kv}.", ""]
    return lines


def micro_lines(res: dict) -> list[str]:
    """The norm and block micro-benchmark tables (nothing when the run skipped them)."""
    mic = res.get("micro")
    if not mic:
        return []
    return microbench.norm_lines(mic["norm"], mic["rounds"]) + microbench.block_lines(mic["block"])


def table(res: dict) -> str:
    return "\n".join(
        [*_header(res), "", *train_table(res["train"]), "", *extras(res), *micro_lines(res)]
    )


def _verdict(x: dict, target: float) -> str:
    if x["min"] >= target:
        return "met in every round"
    return "met by the median (not every round)" if x["median"] >= target else "**missed**"


def targets(res: dict) -> list[str]:
    """Issue #16's targets, each judged from this run's numbers (ratios: median and rounds)."""
    rows = []
    for r in res["train"]:
        name = f"{r['size']}/{r['arch']}"
        rows.append(
            (f"{name}: model ≥ 1.0× {r['reference']}", _r(r["model"]), _verdict(r["model"], 1.0))
        )
        rows.append(
            (f"{name}: Lightning overhead ≤ 3%", _r(r["framework"]), _verdict(r["framework"], 0.97))
        )
    ok = {True: "met", False: "**missed**"}
    if res.get("compile"):
        c = res["compile"]["speedup"]
        rows.append(("compile ≥ 1.3× eager (stretch)", f"{c:.2f}×", ok[c >= 1.3]))
    if res.get("startup"):
        t = res["startup"]["lean_median"]
        rows.append(("start-up ≤ 4 s (tiny)", f"{t:.2f} s", ok[t <= 4.0]))
    if res.get("decode"):
        last = res["decode"]["points"][-1]
        rows.append(
            (
                f"KV decode ≥ 10× at {last['generated']} tokens",
                _r(last["speedup_spread"]),
                _verdict(last["speedup_spread"], 10),
            )
        )
    return ["| target | this run | verdict |", "|---|---:|---|"] + [
        f"| {name} | {value} | {verdict} |" for name, value, verdict in rows
    ]


COMMAND = "archlab bench --docs --out docs/bench.json"
METHOD = """\
- **Training throughput**, three paths per size and arch, interleaved in rounds of `--steps`
  steps in one process (a load change hits all three): archlab end to end
  (`archlab.train.run.train`: data pipeline, LitLM, Lightning, run record, callbacks,
  `logger=none`, fused AdamW); a hand-written loop (forward, cross-entropy, backward,
  `clip_grad_norm_(1.0)`, `torch.optim.AdamW` defaults) on archlab's model; the same loop on
  the independent reference: transformers' `GPT2LMHeadModel` (gpt2 preset) or
  `LlamaForCausalLM` (default arch), built from their config classes at the same shape
  (SDPA attention, random init, no download) with the tokenizer's true vocabulary (archlab
  pads its own to a multiple of 64: 66 → 128 for the char vocabulary). A step's time is the
  wall time between consecutive step ends; tok/s columns are medians over all steps. Dropout 0.
- **Ratios**: per round, throughput ratios of the round's median step times; reported as the
  median over rounds with the min–max spread. *framework* = archlab end to end ÷ hand loop on
  the same model (Lightning, data, logging; the fused AdamW is on archlab's side); *model* =
  archlab's model ÷ the reference model in the same loop. Absolute tok/s depend on the load;
  the ratios are what a shared machine can measure.
- **MFU** = model FLOPs per token (`model/flops.py`, causal attention) × archlab tok/s ÷ the
  fp32 matmul peak re-measured after every round.
- **Start-up**: process start → end of the first optimizer step (`summary.json`
  `startup_sec`) of `archlab train model/size=tiny logger=none train.max_steps=1`, fresh
  interpreters, lean and stock imports alternating.
- **Compile**: archlab end to end with `trainer.compile=true` vs eager at the standard rung;
  steady-state step = median of the second half; compile time = first compiled step − first
  eager step, with inductor's on-disk caches off (cold).
- **Decode**: greedy generation after a 16-token prompt with the KV cache vs recomputing the
  prefix per token, alternating, under `torch.inference_mode()` (as `Transformer.generate`);
  all must produce the same tokens. With more than one thread, each round also decodes with
  the cache on one thread (single-token ops are too small to split across threads).
- **Micro-benchmarks** (`archlab/microbench.py`, skipped by `--no-micro`): forward + backward
  at the rung's and the large size's (batch, T, d_model), every variant once per round,
  `--rounds` rounds interleaved in one process; per round each variant's time divided into the
  baseline's; median and min–max of these speedups. *Norms*: `F.layer_norm` (the baseline) and
  archlab's `LayerNorm` (no bias) vs `F.rms_norm`, archlab's `RMSNorm` as the model builds it
  (normalises in fp32) and that module under `torch.compile` (compiled before the rounds).
  *Blocks*: one serial vs one parallel block (`model/block`) of the default model (same init
  seed), and the parallel block's two input GEMMs (`attn.qkv`, `mlp.fc` on the shared normed
  input) vs one GEMM over their concatenated weights; the *fusion ceiling* is the time that
  fusing would save as a share of the parallel block's time (negative: fusing is slower).
"""


def render_docs(res: dict, json_name: str, docs: Path, readme: Path | None) -> None:
    """docs/bench.md (whole file) and the README's table (between the bench markers)."""
    body = [
        "# `archlab bench`: archlab vs independent reference models",
        "",
        f"Generated by `archlab bench --render {json_name}` from the run below "
        f"(regenerate both this page and the README table: `{COMMAND}`). Profile findings "
        "behind these numbers: [perf.md](perf.md).",
        "",
        "```",
        *_header(res),
        "```",
        "",
        "## Training throughput",
        "",
        *train_table(res["train"]),
        "",
        *extras(res),
        *(["## Micro-benchmarks (issue #18)", "", *micro_lines(res)] if res.get("micro") else []),
        "## Targets (issue #16)",
        "",
        *targets(res),
        "",
        "## Method",
        "",
        METHOD,
    ]
    docs.write_text("\n".join(body))
    if readme is not None and readme.exists():
        _replace_between(readme, [*train_table(res["train"]), "", *extras(res)], res)


BEGIN, END = "<!-- bench:begin (generated by archlab bench --docs) -->", "<!-- bench:end -->"


def _replace_between(readme: Path, lines: list[str], res: dict) -> None:
    text = readme.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"archlab bench: {readme} has no {BEGIN} … {END} markers")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    m = res["machine"]
    note = (
        f"Measured {m['date']} ({m['cpu']}, {m['cores']} cores, torch {m['torch']}, "
        f"{res['threads']} threads, load avg {res['load_start']}):"
    )
    readme.write_text("\n".join([head + BEGIN, note, "", *lines, END]) + tail)


def _args(argv):
    ap = argparse.ArgumentParser(prog="archlab bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="classic,rung,large")
    ap.add_argument("--archs", default="default,gpt2")
    ap.add_argument("--quick", action="store_true", help="CI-sized run (< ~1 min)")
    ap.add_argument("--out", default="bench.json")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 5)")
    ap.add_argument("--steps", type=int, default=None, help="steps per round and path")
    ap.add_argument("--startup-runs", type=int, default=None, help="default 5")
    ap.add_argument("--no-startup", action="store_true")
    ap.add_argument("--no-decode", action="store_true")
    ap.add_argument("--no-compile", action="store_true", help="skip the trainer.compile A/B")
    ap.add_argument("--no-micro", action="store_true", help="skip the norm/block micro-benchmarks")
    ap.add_argument("--text", default=os.environ.get("ARCHLAB_TINYSHAKESPEARE", TEXT_DEFAULT))
    ap.add_argument("--docs", action="store_true", help="then regenerate docs/bench.md + README")
    ap.add_argument("--render", metavar="JSON", help="only regenerate the docs from a bench JSON")
    ap.add_argument("--docs-dir", default="docs", help="where bench.md goes (README: its parent)")
    ap.add_argument("--data", action="store_true", help="the token-store build benchmark instead")
    args = ap.parse_args(argv)
    quick = args.quick
    if quick and args.sizes == ap.get_default("sizes"):
        args.sizes = "tiny"
    if quick and args.archs == ap.get_default("archs"):
        args.archs = "default"
    for name, known in ((args.sizes, SIZES), (args.archs, ARCHS)):
        for x in name.split(","):
            if x not in known:
                kind = "size" if known is SIZES else "arch"
                raise SystemExit(
                    f"archlab bench: unknown {kind} {x!r}; choose among {', '.join(known)}"
                )
    needs_text = not args.render and any(SIZES[x].text for x in args.sizes.split(","))
    if needs_text and not Path(args.text).is_file():  # --render trains nothing
        raise SystemExit(
            f"archlab bench: the classic size trains on Tiny Shakespeare, not found at "
            f"{args.text}: pass --text PATH (or ARCHLAB_TINYSHAKESPEARE), or drop it from --sizes"
        )
    args.text = str(Path(args.text).resolve())
    args.rounds = args.rounds or (2 if quick else 5)
    args.steps = args.steps or (6 if quick else 8)
    return args


def _quiet() -> None:
    import logging
    import warnings

    os.environ.setdefault("CI", "1")  # no progress bar inside the timed loop
    for name in ("archlab", "lightning", "lightning.pytorch", "transformers"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")


def run(args, work: Path) -> dict:
    import torch

    threads = args.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    q = args.quick
    m = {**machine(), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    res: dict = {"machine": m, "threads": threads, "load_start": load(), "quick": q}
    res |= {"rounds": args.rounds, "steps": args.steps, "command": " ".join(sys.argv)}
    res["peak"] = {
        "float32": matmul_peak("float32", (256, 512) if q else (256, 512, 1024), 3 if q else 5),
        "bfloat16": matmul_peak("bfloat16", (256,) if q else (512,), 3),
    }
    res["train"] = []
    for size in args.sizes.split(","):
        for arch in args.archs.split(","):
            r = train_throughput(
                size,
                arch,
                args.rounds,
                args.steps,
                threads,
                res["peak"]["float32"]["flops"],
                work,
                args.text,
            )
            res["train"].append(r)
            print(
                f"  {size}/{arch}: archlab {r['archlab_tok_s']:,.0f} tok/s, framework "
                f"{_r(r['framework'])}, model vs {r['reference']} {_r(r['model'])}",
                file=sys.stderr,
                flush=True,
            )
    if not args.no_startup:
        res["startup"] = startup(args.startup_runs or (1 if q else 5), work)
    if not args.no_decode:
        res["decode"] = (
            decode(128, 2, [32, 64], threads, 1 if q else 2)
            if q
            else decode(256, 4, [128, 256, 512], threads, 5)
        )
        res["kv_bytes"] = kv_bytes()
    if not args.no_compile and not q:
        res["compile"] = compile_speedup(threads, 30, work)
    if not args.no_micro:
        res["micro"] = micro(threads, args.rounds, q)
    res["load_end"] = load()
    return res


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--data" in argv:  # its own flags: archlab bench --data --help
        from archlab.data.buildbench import main as data_main  # the data benchmark only

        return data_main([a for a in argv if a != "--data"])
    args = _args(argv)
    docs = Path(args.docs_dir) / "bench.md"
    readme = Path(args.docs_dir).resolve().parent / "README.md"
    if args.render:
        render_docs(json.loads(Path(args.render).read_text()), args.render, docs, readme)
        print(f"wrote {docs} and the table in {readme}", file=sys.stderr)
        return 0
    _quiet()
    with tempfile.TemporaryDirectory(prefix="archlab-bench-") as tmp:
        res = run(args, Path(tmp))
    res["table"] = table(res)
    print(res["table"])
    Path(args.out).write_text(json.dumps(res, indent=1, default=str))
    print(f"\nwrote {args.out}", file=sys.stderr)
    if args.docs:
        render_docs(res, args.out, docs, readme)
        print(f"wrote {docs} and the table in {readme}", file=sys.stderr)
    return 0
