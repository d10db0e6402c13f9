"""``archlab bench --data``: the token-store build benchmark (issue #17). Memory stays flat as
the corpus grows, and throughput with 1 and 2 worker processes.

    archlab bench --data [--sizes 40 160 640] [--tokenizers byte bpe] [--workers 1 2] [--out F]

For each corpus size (MB of synthetic pseudo-English in ONE ``data=text`` file, the worst case
before #17), tokenizer and worker count it builds a token store in a fresh child process and
samples, every 20 ms:

- ``main_rss_anon_mb``: peak RssAnon of the building process (memmap/page-cache pages excluded);
- ``main_rss_shmem_mb``: peak RssShmem of it (the fixed slots shared with its workers);
- ``tree_pss_anon_mb``: peak sum of Pss_Anon over the process and its workers (forked workers
  share the parent's pages; Pss splits them, so this is the real anonymous footprint).

Throughput is (train + val tokens) / build time (the BPE training on a fixed 4 MB sample
included) and per CPU-second of the encode pass (the process and its workers), which a shared
machine distorts far less; the load average is printed next to it. Worker counts run
interleaved (1, 2, 1, 2 …) so drifting load hits both alike. Each worker encodes with one
thread (``TOKENIZERS_PARALLELISM=false``): the worker count is the parallelism. Corpora and
stores go to a fresh directory under ``--tmp`` (default $TMPDIR) and are deleted afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np

BUILD = """
import json, sys
from archlab.config import DataConfig, TokenizerConfig
from archlab.data.store import load_tokens
d = load_tokens(DataConfig(source="text", path=sys.argv[1], val_fraction=0.01,
                           cache_dir=sys.argv[2], workers=int(sys.argv[3])),
                TokenizerConfig(**json.loads(sys.argv[4])))
print(json.dumps(d.meta))
"""
TOKENIZERS = {
    "byte": {"name": "byte"},
    "char": {"name": "char"},
    # trained on a fixed 4 MB sample (tokenizer.sample_bytes; every corpus starts with the same
    # 4 MB): the fit is a fixed cost, the encode pass is what grows with the corpus
    "bpe": {"name": "bpe", "vocab_size": 4096, "sample_bytes": 4_000_000},
}
DESCRIPTION = (
    "token-store builds: peak memory as a synthetic corpus grows, throughput with 1 and 2 "
    "worker processes, and the extrapolation to a 10B-token corpus"
)
TARGET = 0.20  # peak memory within ±20% as the corpus grows
TEN_B = 10**10


def write_corpus(path: Path, megabytes: int, seed: int = 0) -> None:
    """Zipf-distributed words from a 50k-word syllable lexicon, 12 words a line. The same seed
    gives the same text: a smaller corpus is the start of a larger one."""
    rng = np.random.default_rng(seed)
    syll = np.array(["ka", "lo", "mi", "ten", "sha", "ru", "vel", "dor", "qui", "an"] * 2)
    syll[10:] = ["es", "ob", "pra", "tis", "ul", "gen", "fa", "rho", "zen", "wy"]
    lexicon = np.array(["".join(rng.choice(syll, size=rng.integers(1, 6))) for _ in range(50000)])
    target = megabytes * 1_000_000
    with open(path, "w") as fh:
        while fh.tell() < target:
            words = lexicon[np.minimum(rng.zipf(1.1, size=240_000), len(lexicon)) - 1]
            lines = words.reshape(-1, 12)
            fh.write("".join(" ".join(line).capitalize() + ".\n" for line in lines))


def _field_kb(text: str, name: str) -> int:
    return next((int(x.split()[1]) for x in text.splitlines() if x.startswith(name)), 0)


def _memory_kb(pid: int) -> tuple[int, int, int]:
    """(RssAnon, Pss_Anon, RssShmem) of a process in kB (zeros if it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0, 0, 0
    return (
        _field_kb(status, "RssAnon:"),
        _field_kb(rollup, "Pss_Anon:"),
        _field_kb(status, "RssShmem:"),
    )


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    kids = [int(x) for x in text.split()]
    return kids + [g for k in kids for g in _children(k)]


def _sample(pid: int, peaks: dict, stop: threading.Event) -> None:
    while not stop.is_set():
        rss, pss, shm = _memory_kb(pid)
        now = {
            "main_rss_anon_mb": rss / 1024,
            "main_rss_shmem_mb": shm / 1024,
            "tree_pss_anon_mb": (pss + sum(_memory_kb(k)[1] for k in _children(pid))) / 1024,
        }
        for key, value in now.items():
            peaks[key] = max(peaks.get(key, 0.0), value)
        stop.wait(0.02)


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def build(corpus: Path, cache: Path, workers: int, tokenizer: str) -> dict:
    """One store build in a fresh process; its meta, peak memory and the load average."""
    shutil.rmtree(cache, ignore_errors=True)
    src = Path(__file__).resolve().parents[2]  # the archlab being measured, also in the child
    env = {**os.environ, "PYTHONPATH": str(src)}
    load_before = _load()
    args = [str(corpus), str(cache), str(workers), json.dumps(TOKENIZERS[tokenizer])]
    proc = subprocess.Popen(
        [sys.executable, "-c", BUILD, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    peaks: dict = {}
    stop = threading.Event()
    sampler = threading.Thread(target=_sample, args=(proc.pid, peaks, stop), daemon=True)
    sampler.start()
    out, err = proc.communicate()
    stop.set()
    sampler.join()
    shutil.rmtree(cache, ignore_errors=True)
    if proc.returncode:
        raise SystemExit(f"archlab bench --data: a build failed: {err.decode()[-2000:]}")
    meta = json.loads(out.decode().strip().splitlines()[-1])
    return _result(meta, corpus, tokenizer, workers, [load_before, _load()], peaks)


def _result(meta: dict, corpus: Path, tokenizer: str, workers: int, load, peaks) -> dict:
    tokens = meta["train"] + meta["val"]
    mb = corpus.stat().st_size / 1e6
    return {
        "tokenizer": tokenizer,
        "corpus_mb": round(mb, 1),
        "workers": workers,
        "workers_used": meta["workers"],
        "tokens": tokens,
        "build_sec": meta["build_sec"],
        "fit_sec": meta["fit_sec"],
        "encode_cpu_sec": meta["encode_cpu_sec"],
        "tokens_per_sec": round(tokens / meta["build_sec"]),
        "encode_tokens_per_cpu_sec": round(tokens / max(meta["encode_cpu_sec"], 1e-9)),
        "mb_per_sec": round(mb / meta["build_sec"], 2),
        "load_avg_1m": load,
        **{k: round(v, 1) for k, v in peaks.items()},
    }


# ------------------------------------------------------------------ report


def threading_note() -> str:
    rayon = os.environ.get("RAYON_NUM_THREADS") or os.environ.get("RAYON_RS_NUM_CPUS")
    return (
        "each worker encodes single-threaded (the build sets TOKENIZERS_PARALLELISM=false; "
        f"RAYON_NUM_THREADS={rayon or 'unset'}): the worker count is the parallelism"
    )


def _groups(runs: list[dict]) -> dict[tuple[str, int], list[dict]]:
    out: dict = {}
    for r in runs:
        out.setdefault((r["tokenizer"], r["workers"]), []).append(r)
    return out


def _change(runs: list[dict], key: str, sizes: list[float]) -> tuple[list, float]:
    """Mean peak per corpus size (None where not run) and the change from the smallest to the
    largest size run."""
    means = [[r[key] for r in runs if r["corpus_mb"] == s] for s in sizes]
    means = [float(np.mean(m)) if m else None for m in means]
    ran = [m for m in means if m is not None]
    return means, ran[-1] / ran[0] - 1


def memory_table(runs: list[dict]) -> list[str]:
    sizes = sorted({r["corpus_mb"] for r in runs})
    head = " ".join(f"{s:>7.0f}MB" for s in sizes)
    lines = [f"{'tokenizer':9s} {'workers':>7s} {'peak of':16s} {head}   change  ±20%"]
    for (tok, workers), group in _groups(runs).items():
        keys = ["main_rss_anon_mb"] + (["tree_pss_anon_mb"] if workers > 1 else [])
        for key in keys:
            means, change = _change(group, key, sizes)
            what = "RssAnon (main)" if key.startswith("main") else "Pss_Anon (all)"
            cells = " ".join(f"{m:9.1f}" if m is not None else f"{'–':>9s}" for m in means)
            verdict = "met" if abs(change) <= TARGET else "MISSED"
            verdict = verdict if sum(m is not None for m in means) > 1 else "(one size)"
            lines.append(f"{tok:9s} {workers:7d} {what:16s} {cells}   {change:+6.1%}  {verdict}")
    return lines


def throughput_table(runs: list[dict]) -> list[str]:
    lines = [
        f"{'tokenizer':9s} {'workers':>7s} {'corpus':>8s} {'tokens':>12s} {'build s':>8s} "
        f"{'tokens/s':>10s} {'tok/CPU-s':>10s}  load (1 min)"
    ]
    for r in runs:
        lines.append(
            f"{r['tokenizer']:9s} {r['workers_used']:7d} {r['corpus_mb']:6.0f}MB "
            f"{r['tokens']:12,d} {r['build_sec']:8.1f} {r['tokens_per_sec']:10,d} "
            f"{r['encode_tokens_per_cpu_sec']:10,d}  {r['load_avg_1m'][0]}–{r['load_avg_1m'][1]}"
        )
    return lines


def extrapolation(runs: list[dict], cores: int) -> list[str]:
    """10B tokens at the largest corpus's encode rate per CPU-second, and its memory."""
    lines = []
    for (tok, workers), group in _groups(runs).items():
        big = max(group, key=lambda r: r["corpus_mb"])
        cpu_h = TEN_B / big["encode_tokens_per_cpu_sec"] / 3600
        mem = big.get("tree_pss_anon_mb", big["main_rss_anon_mb"]) + big.get("main_rss_shmem_mb", 0)
        n = min(workers, cores)
        lines.append(
            f"{tok}, {workers} worker(s): {_hours(cpu_h)} of encoding CPU time "
            f"(≈ {_hours(cpu_h / n)} on {n} free core(s); at this run's wall rate, "
            f"{_hours(TEN_B / big['tokens_per_sec'] / 3600)} under load {big['load_avg_1m'][1]}), "
            f"peak memory ≈ {mem:.0f} MB (anonymous + shared), independent of the corpus size"
        )
    return lines


def _hours(h: float) -> str:
    return f"{h:.1f} h" if h >= 1 else f"{h * 60:.1f} min"


def report(res: dict) -> str:
    runs = res["runs"]
    return "\n".join(
        [
            f"archlab bench --data: {res['cpus']} CPU(s); {res['threading']}",
            f"load average (1 min) {res['load_start']} → {res['load_end']}: under load, wall "
            "times are pessimistic; tokens per CPU-second are not",
            "",
            "peak memory (MB) as the corpus grows (means over repeats):",
            *memory_table(runs),
            "",
            "throughput:",
            *throughput_table(runs),
            "",
            "a 10B-token corpus, extrapolated from the largest corpus:",
            *extrapolation(runs, res["cpus"]),
        ]
    )


# ------------------------------------------------------------------ command


def _args(argv):
    ap = argparse.ArgumentParser(prog="archlab bench --data", description=DESCRIPTION)
    ap.add_argument("--sizes", type=int, nargs="+", default=[40, 160, 640], help="corpus MB")
    ap.add_argument("--tokenizers", nargs="+", default=["byte", "bpe"], choices=TOKENIZERS)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--tmp", type=Path, default=None, help="where corpora go (default $TMPDIR)")
    ap.add_argument("--out", type=Path, default=Path("bench-data.json"))
    return ap.parse_args(argv)


def run(args) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="archlab-data-bench-", dir=args.tmp))
    runs = []
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    res = {"cpus": cpus, "threading": threading_note()}
    res["load_start"] = _load()
    try:
        for size in sorted(args.sizes):
            corpus = tmp / f"corpus-{size}mb.txt"
            write_corpus(corpus, size)
            for tokenizer in args.tokenizers:
                for _ in range(args.repeats):
                    for workers in args.workers:  # interleaved
                        r = build(corpus, tmp / "cache", workers, tokenizer)
                        print(json.dumps(r), file=sys.stderr, flush=True)
                        runs.append(r)
            corpus.unlink()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {**res, "load_end": _load(), "command": " ".join(sys.argv), "runs": runs}


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    res = run(args)
    res["report"] = report(res)
    print(res["report"])
    args.out.write_text(json.dumps(res, indent=1))
    print(f"\nwrote {args.out}", file=sys.stderr)
    return 0
