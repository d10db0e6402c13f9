"""``archlab bench`` runs and writes sane JSON at a tiny size; the plain training path stays
lean (no transformers / datasets / matplotlib / scipy / wandb); start-up is recorded.

No timing assertions: performance numbers live in the benchmark output (docs/bench.md)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from helpers import REPO, TINY, run_cli

HEAVY = ("transformers", "datasets", "matplotlib", "scipy", "tokenizers", "wandb", "pandas")


def test_bench_quick_writes_valid_json(tmp_path, monkeypatch):
    from archlab import bench

    monkeypatch.chdir(tmp_path)
    out = tmp_path / "bench.json"
    assert (
        bench.main(
            [
                "--quick",
                "--no-startup",
                "--rounds",
                "1",
                "--steps",
                "3",
                "--threads",
                "1",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    res = json.loads(out.read_text())
    assert res["peak"]["float32"]["flops"] > 0 and res["machine"]["cores"] >= 1
    (row,) = res["train"]
    assert (row["size"], row["arch"], row["reference"]) == ("tiny", "default", "LlamaForCausalLM")
    assert row["archlab_tok_s"] > 0 and row["hand_tok_s"] > 0 and row["reference_tok_s"] > 0
    for ratio in (row["framework"], row["model"]):
        assert ratio["min"] <= ratio["median"] <= ratio["max"] and len(ratio["rounds"]) == 1
    # the reference is transformers' Llama at archlab's shape: the same parameter count
    assert row["reference_params"] == row["params"]
    assert 0 < row["archlab_mfu"] <= 1
    assert row["flops_per_token"] <= row["executed_flops_per_token"]
    assert all(len(v) == 2 for v in row["step_s"].values())  # steps 2..3 of each path
    assert res["decode"]["same_tokens"] is True
    kv = {r["attention"]: r for r in res["kv_bytes"]}
    for r in kv.values():
        assert r["formula"] == r["measured"]
        assert r["formula"] * kv["mha"]["n_kv_heads"] == kv["mha"]["formula"] * r["n_kv_heads"]
    assert "| tiny (2L d64 T64 B16 byte) | default | LlamaForCausalLM |" in res["table"]
    # the micro-benchmarks: every variant timed in every round, ratios against the baseline
    (norm,) = res["micro"]["norm"]
    assert norm["shape"] == [16, 64, 64] and norm["baseline"] == "F.layer_norm"
    assert set(norm["ms"]) == {"F.layer_norm", "archlab LayerNorm", "F.rms_norm", "archlab RMSNorm"}
    assert norm["speedup"]["F.layer_norm"]["rounds"] == [1.0]
    (block,) = res["micro"]["block"]
    assert block["fused_projection"] is False and "not measurable" in block["note"]
    assert all(len(v["rounds"]) == 1 for v in block["speedup"].values())
    assert "| tiny (16, 64, 64) |" in res["table"] and block["note"] in res["table"]


def test_fused_projection_computes_both_input_projections_at_once():
    """The benchmark's fused GEMM is the parallel block's qkv and fc stacked: same outputs."""
    import torch

    from archlab.compose import compose
    from archlab.microbench import fuse, is_fused
    from archlab.model import Transformer

    cfg = compose([*TINY, "model/block=parallel", "model.bias=true"])
    block = Transformer(cfg.model).blocks[0]
    assert is_fused(block) is False
    assert is_fused(torch.nn.Module()) is True  # no separate qkv / fc: nothing left to fuse
    layers = [block.attn.qkv, block.mlp.fc]
    x = torch.randn(2, 5, cfg.model.d_model)
    out = fuse(layers)(x)
    split = out.split([f.out_features for f in layers], -1)
    for part, layer in zip(split, layers):
        torch.testing.assert_close(part, layer(x))


def test_micro_tables_render_from_json_and_only_when_measured(tmp_path):
    from archlab import bench

    res = json.loads((REPO / "docs" / "bench.json").read_text())
    assert bench.micro_lines({k: v for k, v in res.items() if k != "micro"}) == []
    ratio = {"median": 1.5, "min": 1.2, "max": 1.8, "rounds": [1.2, 1.5, 1.8]}
    one = {"median": 1.0, "min": 1.0, "max": 1.0, "rounds": [1.0] * 3}
    res["micro"] = {
        "rounds": 3,
        "norm": [
            {
                "size": "rung",
                "shape": [16, 128, 128],
                "baseline": "F.layer_norm",
                "ms": {"F.layer_norm": 0.5, "F.rms_norm": 1 / 3},
                "speedup": {"F.layer_norm": one, "F.rms_norm": ratio},
                "compile_error": "RuntimeError: no compiler",
            }
        ],
        "block": [
            {
                "size": "rung",
                "shape": [16, 128, 128],
                "mlp": "swiglu",
                "norm": "rmsnorm",
                "note": "not fused",
                "ms": {"serial": 10.0, "parallel": 8.0},
                "speedup": {"serial": one, "parallel": ratio},
                "projection": {
                    "ms": {"two GEMMs (qkv, fc)": 3.0, "one fused GEMM": 2.0},
                    "speedup": {"one fused GEMM": ratio},
                },
                "fusion_ceiling": 0.125,
            }
        ],
    }
    text = "\n".join(bench.micro_lines(res))
    assert (
        "| rung (16, 128, 128) | 0.500 ms · 1.00× (1.00–1.00) | 0.333 ms · 1.50× (1.20–1.80) |"
        in text
    )
    assert (
        "| rung (16, 128, 128) | swiglu, rmsnorm | 10.00 | 8.00 | 1.50× (1.20–1.80) | 3.00 |"
        in text
    )
    assert "| 12.5% |" in text and "not fused." in text and "no compiler" in text
    assert "3 interleaved rounds" in text
    assert text in bench.table(res)
    page = tmp_path / "bench.md"
    bench.render_docs(res, "b.json", page, None)
    assert "## Micro-benchmarks (issue #18)\n\n" + text in page.read_text()


def test_bench_rejects_unknown_size(tmp_path):
    from archlab import bench

    with pytest.raises(SystemExit, match="unknown size"):
        bench.main(["--sizes", "huge", "--out", str(tmp_path / "b.json")])


def test_plain_training_path_imports_nothing_heavy(tmp_path):
    """train() with logger=none, in a fresh interpreter: the heavy optional packages that
    Lightning → torchmetrics would drag in are never imported."""
    overrides = repr([*TINY, "logger=none", "train.max_steps=2"])
    run_dir = repr(str(tmp_path / "run"))
    heavy = repr(HEAVY)
    code = textwrap.dedent(f"""
        import json, sys
        from archlab.compose import compose
        from archlab.train.run import Job, train
        cfg = compose({overrides})
        s = train(cfg, Job(run_dir={run_dir}))
        print(json.dumps({{"status": s["status"], "startup": s["startup_sec"],
                          "heavy": [m for m in {heavy} if m in sys.modules]}}))
    """)
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env={**__import__("os").environ, "PYTHONPATH": str(REPO / "src")},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["status"] == "completed" and res["startup"] > 0
    assert res["heavy"] == []


def test_lean_imports_keep_torchmetrics_working():
    code = textwrap.dedent("""
        import sys, torch
        import archlab.train.run, lightning  # the training path installs the lean-import hook
        from torchmetrics import Metric, MetricCollection
        from torchmetrics.classification import BinaryAccuracy
        assert float(BinaryAccuracy()(torch.tensor([0.9, 0.1]), torch.tensor([1, 0]))) == 1.0
        from lightning_utilities.core.imports import package_available
        assert package_available("scipy")  # the probe is not left poisoned
        print(sorted(m for m in ("transformers", "matplotlib", "scipy") if m in sys.modules))
    """)
    env = {**__import__("os").environ, "PYTHONPATH": str(REPO / "src")}
    lean = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert lean.returncode == 0, lean.stderr[-2000:]
    assert lean.stdout.strip() == "[]"
    stock = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**env, "ARCHLAB_LEAN_IMPORTS": "0"},
        timeout=300,
    )
    assert stock.returncode == 0, stock.stderr[-2000:]


def test_cli_run_records_startup_sec(tmp_path):
    r = run_cli(
        "train",
        *TINY,
        "logger=none",
        "train.max_steps=2",
        f"hydra.run.dir={tmp_path}/r",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert 0 < summary["startup_sec"] < summary["elapsed_sec"] + 60


@pytest.mark.slow
def test_compile_on_cpu_trains(tmp_path):
    """trainer.compile=true works on CPU through archlab's training path (30–60 s to compile)."""
    from archlab import bench

    res = bench.compile_speedup(threads=1, steps=6, work=tmp_path, size="tiny")
    assert res["speedup"] > 0


@pytest.mark.parametrize(
    "kw",
    [
        dict(window="sliding", sliding_window=4),
        dict(window="local_global", sliding_window=3, global_every=2),
        dict(window="sliding", sliding_window=5, attn_softcap=5.0),
        dict(attention="gqa", n_kv_heads=2, window="sliding", sliding_window=4),
    ],
)
def test_unmasked_single_token_decode_matches_recompute_past_the_window(kw):
    """The decode fast path (one query, no mask) is exact also once the cache has rolled past a
    sliding window (the knob tests decode within the window only)."""
    import torch

    from archlab.config import ModelConfig
    from archlab.model import Transformer
    from archlab.model.cache import KVCache

    cfg = ModelConfig(n_layers=2, d_model=32, n_heads=4, block_size=32, vocab_size=64, **kw)
    torch.manual_seed(0)
    model = Transformer(cfg).eval()
    idx = torch.randint(0, 64, (2, 20))
    with torch.no_grad():
        full = model(idx)
        cache = KVCache(cfg.n_layers)
        steps = [model(idx[:, :3], cache)] + [model(idx[:, t : t + 1], cache) for t in range(3, 20)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=2e-5, rtol=1e-5)


def test_decode_with_threads_also_times_the_cache_on_one_thread():
    """With 2 threads the bench decodes three ways (cache, recompute, cache on 1 thread), all
    to the same tokens, and ends on the bench's thread count."""
    import torch

    from archlab import bench

    before = torch.get_num_threads()
    d = bench.decode(32, 1, [4, 8], threads=2, rounds=1, prompt=4)
    assert torch.get_num_threads() == 2
    torch.set_num_threads(before)
    assert d["same_tokens"] is True
    assert [p["generated"] for p in d["points_1_thread"]] == [4, 8]
    assert all(p["cached_tok_s"] > 0 and p["speedup"] > 0 for p in d["points_1_thread"])
    lines = bench.extras({"decode": d})
    assert any(line.startswith("The same KV-cache decode on 1 thread") for line in lines)


def test_cache_buffers_grow_and_match_recompute():
    """Full-attention layers append into preallocated buffers (doubling without a capacity):
    same logits as recomputation, and k/v are exactly the used part."""
    import torch

    from archlab.config import ModelConfig
    from archlab.model import Transformer
    from archlab.model.cache import KVCache

    cfg = ModelConfig(
        n_layers=2,
        d_model=32,
        n_heads=4,
        block_size=64,
        vocab_size=64,
        attention="gqa",
        n_kv_heads=2,
        window="local_global",
        sliding_window=4,
        global_every=2,
    )
    torch.manual_seed(0)
    model = Transformer(cfg).eval()
    idx = torch.randint(0, 64, (2, 40))
    for capacity in (None, 40, 7):
        with torch.no_grad():
            full = model(idx)
            cache = KVCache(cfg.n_layers, capacity=capacity)
            steps = [model(idx[:, :5], cache)] + [
                model(idx[:, t : t + 1], cache) for t in range(5, 30)
            ]
            steps.append(model(idx[:, 30:], cache))
        torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=2e-5, rtol=1e-5)
        assert cache.k[1].shape == (2, 2, 40, 8) and cache.k[0].shape == (2, 2, 3, 8)
        assert torch.equal(cache.kpos[1], torch.arange(40))  # a full layer: every position
        assert cache.allocated_bytes() >= sum(k.nbytes + v.nbytes for k, v in zip(cache.k, cache.v))


def test_render_regenerates_docs_and_readme_table_from_json(tmp_path):
    """``--render`` rewrites docs/bench.md whole and only the README's marked table."""
    from archlab import bench

    (tmp_path / "docs").mkdir()
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\nbefore\n{bench.BEGIN}\nold table\n{bench.END}\nafter\n")
    src = json.loads((REPO / "docs" / "bench.json").read_text())
    (tmp_path / "b.json").write_text(json.dumps(src))
    docs = str(tmp_path / "docs")
    assert bench.main(["--render", str(tmp_path / "b.json"), "--docs-dir", docs]) == 0
    text = readme.read_text()
    assert (
        "old table" not in text and text.startswith("# x\n\nbefore\n") and text.endswith("after\n")
    )
    for r in src["train"]:
        assert f"| {r['size']} ({r['label']}) | {r['arch']} |" in text
    page = (tmp_path / "docs" / "bench.md").read_text()
    assert "## Targets (issue #16)" in page and "framework: archlab ÷ hand" in page
