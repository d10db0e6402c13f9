"""`archlab bench --data`: the token-store build benchmark (issue #17) runs through the real
CLI, and its report judges the ±20% memory target from the numbers it is given."""

from __future__ import annotations

import json

from archlab.data.buildbench import memory_table, write_corpus
from helpers import run_cli


def test_bench_data_builds_byte_stores_with_one_and_two_workers(tmp_path):
    out = tmp_path / "b.json"
    r = run_cli(
        "bench", "--data", "--sizes", "1", "--tokenizers", "byte", "--workers", "1", "2",
        "--tmp", str(tmp_path), "--out", str(out), cwd=tmp_path, timeout=900,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text())
    one, two = res["runs"]
    assert (one["workers_used"], two["workers_used"]) == (1, 2)  # > 1 batch: a real pool
    assert one["tokens"] == two["tokens"] and abs(one["tokens"] / 1e6 - one["corpus_mb"]) <= 0.05
    assert two["main_rss_shmem_mb"] > 0 and two["tree_pss_anon_mb"] > 0
    assert "peak memory (MB)" in r.stdout and "10B-token corpus" in r.stdout
    assert "TOKENIZERS_PARALLELISM=false" in r.stdout
    assert [p.name for p in tmp_path.iterdir()] == ["b.json"]  # corpora and stores deleted


def test_memory_verdict_is_the_change_from_the_smallest_to_the_largest_corpus():
    def run(mb, peak, workers=1):
        return {"tokenizer": "bpe", "workers": workers, "corpus_mb": mb, "main_rss_anon_mb": peak}

    flat = memory_table([run(40, 100), run(160, 104), run(640, 119)])
    grows = memory_table([run(40, 100), run(640, 130), run(640, 120)])  # mean 125
    assert flat[1].split()[-2:] == ["+19.0%", "met"]
    assert grows[1].split()[-2:] == ["+25.0%", "MISSED"]


def test_a_smaller_corpus_is_the_start_of_a_larger_one(tmp_path):
    """So BPE trains on the same 4 MB sample at every size."""
    write_corpus(tmp_path / "a.txt", 1)
    write_corpus(tmp_path / "b.txt", 3)
    a, b = (tmp_path / "a.txt").read_bytes(), (tmp_path / "b.txt").read_bytes()
    assert len(b) > len(a) and b.startswith(a)
