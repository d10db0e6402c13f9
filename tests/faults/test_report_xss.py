"""``report.html`` shows run-derived text as text: a config value that is HTML (or closes the
data <script>) never runs in the reader's browser. Real headless chromium, hover events."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from fixtures_runs import make_run
from helpers import run_cli

PAYLOADS = ["<img src=x onerror=alert(1)>", "</script><script>alert(2)</script><!--"]
PROBE = """<script>
window.alert = () => { document.documentElement.dataset.xss = 'ran'; };
window.addEventListener('load', () => setTimeout(() => {
  for (const svg of document.querySelectorAll('svg')) {
    const r = svg.getBoundingClientRect();
    for (let i = 1; i < 20; i++) {
      svg.dispatchEvent(new MouseEvent('mousemove', {bubbles: true,
        clientX: r.left + r.width * i / 20, clientY: r.top + r.height / 2}));
    }
  }
  document.documentElement.dataset.hovered = document.querySelectorAll('svg').length;
}, 200));
</script>"""


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.browser
def test_html_payloads_in_run_configs_never_run_script(tmp_path):
    chromium = _chromium()
    if not chromium:
        pytest.skip("no chromium (apt-get install chromium)")
    sweep = tmp_path / "sweep"
    for i, mlp in enumerate(["swiglu", *PAYLOADS]):
        for seed in (0, 1):
            make_run(sweep, f"r{i}s{seed}", seed=seed, final=3.0 + i / 10,
                     overrides={"model.mlp": mlp})  # fmt: skip
    r = run_cli("compare", str(sweep), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    page = tmp_path / "out" / "report.html"
    html = page.read_text()
    assert "<img src=x" not in html and "</script><script>alert" not in html
    probe = tmp_path / "probe.html"  # the report, plus a script that hovers every chart
    probe.write_text(html.replace("<head>", "<head>" + PROBE, 1))
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
           "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()]  # fmt: skip
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=180).stdout
    assert re.search(r'data-hovered="[1-9]', dom), dom[-2000:]  # the hover script ran
    assert 'data-xss="ran"' not in dom
    assert "<img src=" not in dom  # the payload is text everywhere, tooltip included
    assert "onerror=alert(1)" in dom  # … and it is there, as text
    assert not list(Path(tmp_path).glob("x"))
