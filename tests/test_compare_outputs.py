"""archlab compare outputs (report.md, PNGs, report.html, compare.json) and the CLI."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from archlab.runs.compare import compare_runs, main
from archlab.runs.table import relativize
from archlab.runs.values import stable_floats
from fixtures_runs import make_ab_sweep, make_lr_sweep, make_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def ab_out(tmp_path_factory):
    root = tmp_path_factory.mktemp("ab")
    sweep = make_ab_sweep(root)
    assert main([str(sweep)]) == 0
    return sweep, sweep / "compare"


@pytest.fixture(scope="module")
def lr_out(tmp_path_factory):
    root = tmp_path_factory.mktemp("lr")
    sweep = make_lr_sweep(root)
    out = root / "out"
    assert main([str(sweep), "--out", str(out), "--x", "tokens"]) == 0
    return sweep, out


def test_report_md_has_table_verdicts_and_valid_png_links(ab_out):
    _, out = ab_out
    md = (out / "report.md").read_text()
    assert "| arm | runs | diverged | failed | final val loss (mean ± 95% CI)" in md
    assert re.search(r"\| mlp=geglu \| 4 \| 1 \| 0 \| \d\.\d{4} ± \d\.\d{4} \| -0\.2000 \[", md)
    assert "| unstable |" in md and "better (Δ -0.2000" in md
    assert "Noise floor" in md and "out of memory" in md
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert {
        "final_val_loss.png",
        "curves_step.png",
        "curves_tokens.png",
        "curves_flops.png",
        "curves_time.png",
    } == set(links)
    for link in links:
        assert not Path(link).is_absolute()
        assert (out / link).read_bytes()[:8] == PNG_MAGIC


def test_compare_json_round_trips(ab_out):
    sweep, out = ab_out
    data = json.loads((out / "compare.json").read_text())
    # compare.json is the compare result with relative sources and 12 significant digits
    assert data == stable_floats(relativize(compare_runs([str(sweep)]), out))
    assert not any(Path(r["source"]).is_absolute() for r in data["failed_runs"])
    assert data["arms"][1]["verdict"] == "unstable" and data["arms"][1]["test_verdict"] == "better"


def test_report_html_is_self_contained_and_embeds_every_arm(ab_out):
    html = (ab_out[1] / "report.html").read_text()
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=[\"']?(https?:)?//", html)
    assert "https://" not in html and "http://" not in html.replace(
        "http://www.w3.org/2000/svg", ""
    )
    data = json.loads(re.search(r'id="archlab-data">(.*?)</script>', html, re.DOTALL).group(1))
    for label in ("mlp=swiglu", "mlp=geglu"):
        for chart in data["charts"]:
            assert label in [s["name"] for s in chart["series"]]
    assert {c["id"] for c in data["charts"]} == {
        f"{m}_{x}" for m in ("train", "val") for x in ("step", "tokens", "flops", "time")
    }


def test_lr_sweep_report(lr_out):
    _, out = lr_out
    md = (out / "report.md").read_text()
    assert "## Learning-rate sweep (`optim.lr`)" in md and "(2/2 div.)" in md
    assert "![loss_vs_lr](loss_vs_lr.png)" in md and "curves_step.png" not in md
    assert (out / "loss_vs_lr.png").read_bytes()[:8] == PNG_MAGIC
    data = json.loads((out / "compare.json").read_text())
    assert data["arms"][1]["lr_sensitivity"] == pytest.approx(0.40)
    html = (out / "report.html").read_text()
    assert '"id": "loss_vs_lr", "group": "loss_vs_lr", "logx": true' in html


def test_missing_flops_axis_is_noted(tmp_path):
    make_run(tmp_path / "s", "a", seed=0, flops="none")
    make_run(tmp_path / "s", "b", seed=1, flops="none")
    assert main([str(tmp_path / "s"), "--x", "flops", "--out", str(tmp_path / "o")]) == 0
    md = (tmp_path / "o" / "report.md").read_text()
    assert "no arm has `flops` in its metric lines: flops figure omitted" in md
    assert "curves_flops.png" not in md


@pytest.mark.parametrize(
    "argv, message",
    [
        (["{empty}"], "no runs found"),
        (["{sweep}", "--baseline", "mlp=relu"], "no arm matches"),
        (["{sweep}", "--baseline", "depth=3"], "unknown baseline key"),
        (["{sweep}", "--x", "epochs"], "--x must be one of"),
        (["{sweep}", "--alpha", "abc"], "invalid float value"),
        ([], "give run/sweep directories"),
    ],
)
def test_cli_errors_exit_2_with_one_line(tmp_path, capsys, argv, message):
    sweep = make_ab_sweep(tmp_path)
    (tmp_path / "empty").mkdir()
    argv = [a.format(empty=tmp_path / "empty", sweep=sweep) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and err[-1].startswith("archlab compare: error:")
    assert not any("Traceback" in line for line in err)
    assert all(line.startswith("warning:") for line in err[:-1])


def _chromium() -> str | None:
    return shutil.which("chromium") or (
        "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
    )


@pytest.mark.browser
def test_html_renders_in_headless_chromium(lr_out, tmp_path):
    chromium = _chromium()
    if not chromium:
        pytest.skip("no chromium")
    page = lr_out[1] / "report.html"
    cmd = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=3000",
        "--dump-dom",
        page.as_uri(),
    ]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False).stdout
    charts = json.loads(re.search(r'id="archlab-data">(.*?)</script>', dom, re.DOTALL).group(1))[
        "charts"
    ]
    assert f'data-rendered="{len(charts)}"' in dom  # the script ran to the end
    for chart in charts:
        svg = re.search(rf'<svg[^>]*data-chart="{chart["id"]}".*?</svg>', dom, re.DOTALL).group(0)
        for series in chart["series"]:
            group = re.search(rf'<g data-arm="{re.escape(series["name"])}".*?</g>', svg, re.DOTALL)
            assert group, (chart["id"], series["name"])
            assert re.search(r'<path d="M[\d.]+,[\d.]+', group.group(0))
    lr_svg = re.search(r'<svg[^>]*data-chart="loss_vs_lr".*?</svg>', dom, re.DOTALL).group(0)
    assert 'class="diverged"' in lr_svg  # qk_norm=none diverged at the top LR


def test_run_text_reaching_html_is_escaped(tmp_path):
    evil = "</script><script>alert(1)</script>"
    for seed in (0, 1):
        make_run(tmp_path / "runs", f"a{seed}", seed=seed, final=3.0 + seed / 100)
        make_run(tmp_path / "runs", f"b{seed}", seed=seed, final=2.9, overrides={"model.mlp": evil})
    assert main([str(tmp_path / "runs"), "--out", str(tmp_path / "out"), "--x", "step"]) == 0
    html = (tmp_path / "out" / "report.html").read_text()
    assert "<script>alert(1)" not in html and "alert(1)" in html  # present, but only as text
    assert html.count("<script") == 2  # the data block and the page's own script
