"""Token-store build benchmark (issue #17): memory stays flat as the corpus grows, and
throughput with 1 and 2 worker processes.

    python benchmarks/data_build.py --sizes 40 160 640 --tokenizers byte bpe --out results.json

For each tokenizer and corpus size (MB of synthetic pseudo-English in ONE ``data=text`` file,
the worst case before #17) it builds a token store in a fresh child process and samples, every
20 ms, the anonymous memory of that process and of its worker processes:

- ``main_rss_anon``: peak RssAnon of the building process (memmap/page-cache pages excluded);
- ``tree_pss_anon``: peak sum of Pss_Anon over the process and its workers (forked workers
  share the parent's pages; Pss splits them, so this is the real anonymous footprint).

Throughput is (train + val tokens) / build time, which includes the BPE training pass; the
load average is recorded next to it (the machine may be shared). Worker counts are run
interleaved (1, 2, 1, 2 …) so drifting load hits both alike. Each worker encodes with one
thread (``TOKENIZERS_PARALLELISM=false``); parallelism comes only from processes.

Corpora and stores are written under ``--tmp`` (default: a fresh directory in $TMPDIR) and
deleted afterwards.
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
    # trained on a 4 MB sample (tokenizer.sample_bytes): the fit is a fixed cost, the encode
    # pass is what grows with the corpus
    "bpe": {"name": "bpe", "vocab_size": 4096, "sample_bytes": 4_000_000},
}


def write_corpus(path: Path, megabytes: int, seed: int = 0) -> None:
    """Zipf-distributed words from a 50k-word syllable lexicon, 12 words a line."""
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


def _anon_kb(pid: int) -> tuple[int, int, int]:
    """(RssAnon, Pss_Anon, RssShmem) of a process in kB (zeros if it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0, 0, 0
    shm = next((int(x.split()[1]) for x in status.splitlines() if x.startswith("RssShmem:")), 0)
    rss = next((int(x.split()[1]) for x in status.splitlines() if x.startswith("RssAnon:")), 0)
    pss = next((int(x.split()[1]) for x in rollup.splitlines() if x.startswith("Pss_Anon:")), 0)
    return rss, pss, shm


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    kids = [int(x) for x in text.split()]
    return kids + [g for k in kids for g in _children(k)]


def _sample(pid: int, peaks: dict, stop: threading.Event) -> None:
    while not stop.is_set():
        main_rss, main_pss, main_shm = _anon_kb(pid)
        tree = main_pss + sum(_anon_kb(k)[1] for k in _children(pid))
        peaks["main_rss_anon_mb"] = max(peaks.get("main_rss_anon_mb", 0), main_rss / 1024)
        peaks["main_rss_shmem_mb"] = max(peaks.get("main_rss_shmem_mb", 0), main_shm / 1024)
        peaks["tree_pss_anon_mb"] = max(peaks.get("tree_pss_anon_mb", 0), tree / 1024)
        stop.wait(0.02)


def build(corpus: Path, cache: Path, workers: int, tokenizer: str) -> dict:
    """One store build in a fresh process; its meta, peak memory and the load average."""
    shutil.rmtree(cache, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    load_before = os.getloadavg()[0]
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
    if proc.returncode:
        raise SystemExit(f"build failed: {err.decode()[-2000:]}")
    meta = json.loads(out.decode().strip().splitlines()[-1])
    tokens = meta["train"] + meta["val"]
    shutil.rmtree(cache, ignore_errors=True)
    return {
        "tokenizer": tokenizer,
        "corpus_mb": round(corpus.stat().st_size / 1e6, 1),
        "workers": workers,
        "workers_used": meta["workers"],
        "tokens": tokens,
        "build_sec": meta["build_sec"],
        "fit_sec": meta["fit_sec"],
        "encode_cpu_sec": meta["encode_cpu_sec"],
        "tokens_per_sec": round(tokens / meta["build_sec"]),
        "encode_tokens_per_cpu_sec": round(tokens / max(meta["encode_cpu_sec"], 1e-9)),
        "mb_per_sec": round(corpus.stat().st_size / 1e6 / meta["build_sec"], 2),
        "load_avg_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        **{k: round(v, 1) for k, v in peaks.items()},
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[40, 160, 640], help="corpus MB")
    ap.add_argument("--tokenizers", nargs="+", default=["byte", "bpe"], choices=TOKENIZERS)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--tmp", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="archlab-data-bench-", dir=args.tmp))
    results = []
    try:
        for size in args.sizes:
            corpus = tmp / f"corpus-{size}mb.txt"
            write_corpus(corpus, size)
            for tokenizer in args.tokenizers:
                for _ in range(args.repeats):
                    for workers in args.workers:  # interleaved
                        r = build(corpus, tmp / "cache", workers, tokenizer)
                        print(json.dumps(r), flush=True)
                        results.append(r)
            corpus.unlink()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.out:
        args.out.write_text(json.dumps({"cpus": os.cpu_count(), "runs": results}, indent=1))


if __name__ == "__main__":
    main()
