"""TensorBoard, the local dashboard: a sweep logged with ``logger=tensorboard`` is served by a
real ``tensorboard --logdir <sweep>`` (asserted through its HTTP data API), with one point per
tag and step, and the config in the HParams tab with the final val loss as its metric; a
``browser`` test renders the page in headless chromium."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from helpers import TINY, run_cli


@pytest.fixture(scope="module")
def tb_sweep(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tb")
    r = run_cli(
        "train",
        "-m",
        *TINY,
        "train.max_steps=10",
        "logger=tensorboard",
        "model/mlp=gelu,swiglu",
        f"out_dir={root}",
        "name=tb",
        cwd=root,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return root / "sweeps" / "tb"


def final_losses(sweep: Path) -> dict[str, float]:
    """{TensorBoard run name: final val loss} from the run records."""
    return {
        f"{p.parent.name}/tensorboard": json.loads(p.read_text())["val_loss"]
        for p in sweep.glob("*/summary.json")
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, body: dict | None = None):
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json", "X-XSRF-Protected": "1"}
    with urllib.request.urlopen(urllib.request.Request(url, data, headers), timeout=10) as r:
        return json.loads(r.read())


@pytest.fixture(scope="module")
def tensorboard(tb_sweep):
    """A real TensorBoard server on localhost, serving the sweep folder."""
    exe = shutil.which("tensorboard") or str(Path(sys.executable).with_name("tensorboard"))
    port = free_port()
    cmd = [exe, "--logdir", str(tb_sweep), "--host", "127.0.0.1", f"--port={port}"]
    proc = subprocess.Popen(
        [*cmd, "--load_fast=false", "--reload_interval=1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    try:
        while True:
            try:
                if len(get(f"{url}/data/runs")) == 2:
                    break
            except OSError:
                pass
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "tensorboard did not serve the runs in 90 s"
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_tensorboard_serves_the_sweep_runs_val_loss_and_hparams(tb_sweep, tensorboard):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    losses = final_losses(tb_sweep)
    assert sorted(get(f"{tensorboard}/data/runs")) == sorted(losses)
    tags = get(f"{tensorboard}/data/plugin/scalars/tags")
    for run, final in losses.items():
        assert {"val/loss", "train/loss", "tokens"} <= set(tags[run])
        query = urllib.parse.urlencode({"run": run, "tag": "val/loss"})
        points = get(f"{tensorboard}/data/plugin/scalars/scalars?{query}")
        assert [p[1] for p in points] == [10] and points[-1][2] == pytest.approx(final)
        # a train row and a val row share steps 10 (and 5): one point per tag and step
        acc = EventAccumulator(str(tb_sweep / run))
        acc.Reload()
        assert [e.step for e in acc.Scalars("train/loss")] == [1, 5, 10]
        for tag in ("tokens", "time", "flops"):
            steps = [e.step for e in acc.Scalars(tag)]
            assert steps == sorted(set(steps)) == [1, 5, 10], tag
    # HParams tab: the resolved config per run, with the final val loss as the metric
    experiment = get(f"{tensorboard}/data/plugin/hparams/experiment", {"experimentName": ""})
    assert [m["name"]["tag"] for m in experiment["metricInfos"]] == ["val/loss"]
    assert "model.mlp" in {h["name"] for h in experiment["hparamInfos"]}
    groups = get(
        f"{tensorboard}/data/plugin/hparams/session_groups",
        {
            "experimentName": "",
            "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_RUNNING"],
            "colParams": [{"metric": {"group": "", "tag": "val/loss"}}],
            "startIndex": 0,
            "sliceSize": 10,
        },
    )["sessionGroups"]
    by_run = {g["name"]: g for g in groups}
    assert sorted(by_run) == sorted(losses)
    for run, final in losses.items():
        [metric] = by_run[run]["sessions"][0]["metricValues"]
        assert metric["value"] == pytest.approx(final) and metric["trainingStep"] == 10
        assert by_run[run]["hparams"]["model.mlp"] in ("gelu", "swiglu")


@pytest.mark.browser
def test_tensorboard_page_renders_the_runs_val_loss_in_headless_chromium(
    tb_sweep, tensorboard, tmp_path
):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "needs Debian's chromium: apt-get install -y chromium"
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
        "--virtual-time-budget=60000",
        "--dump-dom",
        f"{tensorboard}/?tagFilter=val%2Floss#timeseries",
    ]
    # the val/loss card's tooltip table: run name, smoothed, value (4 decimals), step 10
    rows = {run: rf"{re.escape(run)} [\d.]+ {final:.4f} 10 " for run, final in
            final_losses(tb_sweep).items()}  # fmt: skip
    # the dashboard fetches its data from the live server, which virtual time does not wait
    # for: a cold first load (seen once in CI) can dump the page before the card is filled
    for _ in range(3):
        dom = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False).stdout
        body = re.sub(r"<style.*?</style>|<script.*?</script>", "", dom, flags=re.DOTALL)
        text = " ".join(re.sub(r"<[^>]+>", " ", body).split())
        if all(re.search(row, text) for row in rows.values()):
            break
    assert "Tags matching filter" in text  # the time-series dashboard rendered the filter
    for run, row in rows.items():
        assert re.search(row, text), (run, text[:3000])
