"""Scale ladders on synthetic run records with a known answer, and their report."""

from __future__ import annotations

import math

import numpy as np
import pytest

from archlab.runs.compare import compare_runs, main
from archlab.runs.ladder import fit_curve
from fixtures_runs import make_run

SEED_NOISE = {0: 0.004, 1: -0.003, 2: 0.001}


def make_ladder(root, steps_list, gaps):
    for steps, gap in zip(steps_list, gaps):
        base = 3.2 - 0.15 * math.log10(steps / 100)
        for seed, eps in SEED_NOISE.items():
            for mlp, final in (("swiglu", base + eps), ("geglu", base + eps + gap + eps / 4)):
                make_run(
                    root,
                    f"{mlp}_{steps}_s{seed}",
                    seed=seed,
                    final=final,
                    steps=steps,
                    overrides={"model.mlp": mlp, "train.max_steps": steps},
                )
    return root


def test_growing_advantage_has_a_negative_trend_with_a_log_linear_fit(tmp_path):
    make_ladder(tmp_path, [100, 200, 400], [-0.02, -0.04, -0.06])
    result = compare_runs([str(tmp_path)], baseline="mlp=swiglu")
    ladder = result["ladder"]
    assert ladder["rung_keys"] == ["train.max_steps"] and ladder["baseline"] == "mlp=swiglu"
    geglu = ladder["arms"]["mlp=geglu"]
    gaps = [r["gap"]["mean"] for r in geglu["rungs"]]
    assert gaps == pytest.approx([-0.02, -0.04, -0.06], abs=0.002)
    hi = geglu["trend"]["ci"][1]
    # gap falls by 0.02 per doubling = 0.066 per decade of compute
    assert geglu["trend"]["slope"] == pytest.approx(-0.02 / math.log10(2), rel=0.05) and hi < 0
    assert geglu["fit"]["kind"] == "log-linear" and "extrapolated" not in geglu
    assert any("fixed LR" in w for w in result["warnings"])


def test_power_law_only_with_five_rungs_and_then_labelled_extrapolation():
    c = np.geomspace(1e12, 1e14, 5)
    y = 1.5 + 40.0 * c**-0.1
    fit = fit_curve([(float(a), float(b)) for a, b in zip(c, y)])
    assert fit["kind"] == "power law" and fit["r2"] > 0.999
    assert fit["alpha"] == pytest.approx(0.1, rel=0.05)
    four = fit_curve([(float(a), float(b)) for a, b in zip(c[:4], y[:4])])
    assert four["kind"] == "log-linear"


def test_ladder_report_has_plot_and_table(tmp_path):
    sweep = make_ladder(tmp_path / "runs", [100, 200, 400, 800, 1600], [0.0] * 5)
    out = tmp_path / "out"
    assert main([str(sweep), "--out", str(out), "--x", "step", "--baseline", "mlp=swiglu"]) == 0
    md = (out / "report.md").read_text()
    assert "## Scale ladder" in md and "ladder.png" in md and "power law" in md
    assert "extrapolated" in md
    assert (out / "ladder.png").read_bytes()[:4] == b"\x89PNG"
    # report.html's spec asks for the PNG's log y axis on the loss-vs-compute chart
    assert '"id": "ladder_loss", "logy": true' in (out / "report.html").read_text()
    assert (out / "compare.csv").read_text().count("\n") == 1 + 5 * 3 * 2


def _y_ticks(svg: str) -> list[tuple[float, float]]:
    """(value, pixel y) of the y-axis tick labels (text-anchor end) of a rendered chart."""
    import re

    found = re.findall(r'<text x="[\d.]+" y="([\d.]+)" text-anchor="end">([^<]+)</text>', svg)
    return [(float(label), float(y)) for y, label in found]


@pytest.mark.browser
def test_html_loss_axes_are_log_where_the_pngs_are_and_switchable(tmp_path):
    """report.html draws the ladder's loss-vs-compute chart on a log y axis (as ladder.png),
    loss curves on a linear one with a "log y" box; a Δ chart (negative values) gets none."""
    import re
    import subprocess

    from test_compare_outputs import _chromium

    chromium = _chromium()
    if not chromium:
        pytest.skip("no chromium")
    sweep = make_ladder(tmp_path / "runs", [100, 400, 1600], [0.02, -0.01, -0.04])
    out = tmp_path / "out"
    assert main([str(sweep), "--out", str(out), "--x", "step", "--baseline", "mlp=swiglu"]) == 0
    page = out / "report.html"
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
           f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=3000",
           "--dump-dom", page.as_uri()]  # fmt: skip
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False).stdout

    def svg(chart: str) -> str:
        return re.search(rf'<svg[^>]*data-chart="{chart}".*?</svg>', dom, re.DOTALL).group(0)

    ladder = svg("ladder_loss")
    assert 'data-logy="true"' in ladder and "final val loss (log)" in ladder
    ticks = _y_ticks(ladder)
    assert len(ticks) >= 3
    steps = [b[0] - a[0] for a, b in zip(ticks, ticks[1:])]
    assert max(steps) - min(steps) < 1e-9  # equally spaced values …
    pixels = [a[1] - b[1] for a, b in zip(ticks, ticks[1:])]
    assert all(p > q + 0.5 for p, q in zip(pixels, pixels[1:]))  # … closer together upwards
    curve = svg("val_step")
    assert 'data-logy="false"' in curve
    pixels = [a[1] - b[1] for a, b in zip(_y_ticks(curve), _y_ticks(curve)[1:])]
    assert max(pixels) - min(pixels) < 0.5  # linear: equal spacing
    boxes = set(re.findall(r'<input type="checkbox" data-chart="([^"]+)"', dom))
    assert {"ladder_loss", "val_step", "train_step"} <= boxes and "ladder_gap" not in boxes


LADDER_ORDER_SCRIPT = """
import json, math, sys
sys.path.insert(0, sys.argv[2])
from fixtures_runs import make_run
from archlab.runs.compare import compare_runs
from pathlib import Path
root = Path(sys.argv[1])
for steps in (100, 200, 400):
    for seed in (0, 1):
        for i, mlp in enumerate(("swiglu", "relu", "geglu", "gelu", "reglu", "swish")):
            final = 3.0 - 0.1 * math.log10(steps) + 0.01 * i + 0.001 * seed
            make_run(root, f"{mlp}_{steps}_s{seed}", seed=seed, final=final, steps=steps,
                     overrides={"model.mlp": mlp, "train.max_steps": steps})
ladder = compare_runs([str(root)], baseline="mlp=swiglu")["ladder"]
print(json.dumps([list(ladder["arms"]), [r["compute"] for r in ladder["rungs"]]]))
"""


def test_ladder_order_is_the_same_in_every_process(tmp_path):
    # reports are pure functions of the records: the ladder's arms must not come out in a
    # set's order, which changes with each process's string-hash seed
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    tests_dir = str(Path(__file__).parent)
    outs = []
    for hash_seed in ("1", "2", "3"):
        root = tmp_path / f"runs{hash_seed}"
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        cmd = [sys.executable, "-c", LADDER_ORDER_SCRIPT, str(root), tests_dir]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        outs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    assert all(o == outs[0] for o in outs)
    arms, computes = outs[0]
    assert arms[0] == "mlp=swiglu" and len(arms) == 6
    assert computes == sorted(computes)


def test_keys_that_move_with_the_rung_name_the_rung_and_each_rung_has_its_own_baseline(
    tmp_path,
):
    # glu's ladder: each rung also sets its own warmup and block size. Those keys must go
    # with the rung (not split every arm into one arm per rung), and each arm's Δ in the
    # table must be against the baseline arm at its own rung, not the first rung's.
    for steps, warmup, block, gap in (
        (100, 10, 64, -0.08),
        (200, 20, 64, -0.05),
        (400, 40, 128, -0.02),
    ):
        base = 3.2 - 0.15 * math.log10(steps / 100)
        for seed, eps in SEED_NOISE.items():
            for mlp, final in (("gelu", base + eps), ("swiglu", base + eps + gap + eps / 4)):
                over = {
                    "model.mlp": mlp,
                    "train.max_steps": steps,
                    "optim.warmup_steps": warmup,
                    "model.block_size": block,
                }
                make_run(
                    tmp_path,
                    f"{mlp}_{steps}_s{seed}",
                    seed=seed,
                    final=final,
                    steps=steps,
                    overrides=over,
                )
    result = compare_runs([str(tmp_path)], baseline="mlp=gelu")
    ladder = result["ladder"]
    assert ladder["arm_keys"] == ["model.mlp"] and set(ladder["arms"]) == {"mlp=gelu", "mlp=swiglu"}
    assert {"optim.warmup_steps", "model.block_size", "train.max_steps"} <= set(ladder["rung_keys"])
    gaps = [r["gap"]["mean"] for r in ladder["arms"]["mlp=swiglu"]["rungs"]]
    assert gaps == pytest.approx([-0.08, -0.05, -0.02], abs=0.002)
    assert ladder["arms"]["mlp=swiglu"]["trend"]["ci"][0] > 0  # the lead shrinks with compute
    rows = {r["label"]: r for r in result["arms"]}
    verdicts = sorted(r["test_verdict"] for r in rows.values())
    assert verdicts.count("baseline") == 3  # one gelu baseline per rung
    for row in rows.values():
        if row["diff"] is not None:  # swiglu at a rung vs gelu at the same rung
            assert (
                "mlp=swiglu" in row["label"]
                and row["baseline"].replace("gelu", "swiglu") == row["label"]
            )
            assert row["diff"]["mean"] == pytest.approx(
                {100: -0.08, 200: -0.05, 400: -0.02}[int(row["values"]["train.max_steps"])],
                abs=0.002,
            )


def test_size_keys_that_only_define_arms_make_no_ladder(tmp_path):
    # gqa's arms differ in model.n_kv_heads (a size key) together with the attention knob:
    # each arm alone at its "rung" is not a ladder, and every arm is compared with row 0
    for seed, eps in SEED_NOISE.items():
        for i, (attn, kv) in enumerate((("mha", None), ("gqa", 2), ("mqa", 1))):
            make_run(
                tmp_path,
                f"{attn}_s{seed}",
                seed=seed,
                final=3.0 + 0.01 * i + eps,
                overrides={"model.attention": attn, "model.n_kv_heads": kv},
            )
    result = compare_runs([str(tmp_path)], baseline="attention=mha")
    assert result["ladder"] is None
    rows = result["arms"]
    assert [r["test_verdict"] == "baseline" for r in rows] == [True, False, False]
    assert [r["diff"]["mean"] for r in rows[1:]] == pytest.approx([0.01, 0.02])
