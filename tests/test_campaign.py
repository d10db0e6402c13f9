"""The campaign machinery (issue #12): records, the corpus pin, the pooling refusal, --plan,
reports as pure functions of the records (``--report-only`` idempotence), skip-what-is-recorded.

Synthetic records with known answers (``fixtures_runs.make_run`` → ``records.write_record``)
go through the real CLI; one smoke reproduce trains for real (test_claims.py)."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest

from archlab.claims import records as R
from archlab.claims.registry import ClaimError, load_claim
from fixtures_runs import make_run
from helpers import REPO, run_cli

CLAIM = """
id: demo
claim: arm b is less LR-sensitive than arm a
sources: ["none: a synthetic test"]
base: [model/size=tiny, logger=none, train.max_steps=2, train.ckpt_every=0]
arms: {a: [model/mlp=relu], b: [model/mlp=gelu]}
baseline: a
seeds: SEEDS
lr_grid: [0.001, 0.01, 0.1]
budget: {steps: 2}
campaign: {minimums: stability, cpu_hours: HOURS}
metrics: [val_loss, lr_sensitivity]
rule:
  - {check: lr_sensitivity_lower, arm: b, margin: 0.05, headline: true, literature: "none (test)"}
scale_note: a synthetic test
"""
PROV = {"commit": "abc123", "dirty": False, "numerics": 2, "torch": "2.13.0+cpu",
        "python": "3.11.7", "cpu": "Test CPU", "threads": 2, "corpus": "feedbeef"}  # fmt: skip


def write_claim(tmp: Path, seeds: int = 3, hours: float = 100) -> Path:
    claims = tmp / "claims"
    claims.mkdir(exist_ok=True)
    text = CLAIM.replace("SEEDS", str(seeds)).replace("HOURS", str(hours))
    (claims / "demo.yaml").write_text(text)
    # the campaign's settings sit beside the claims dir, as experiments/campaign.yaml does
    (tmp / "campaign.yaml").write_text((REPO / "experiments" / "campaign.yaml").read_text())
    return claims


def make_records(tmp: Path, claim_dir: Path, prov=None, seeds=(0, 1, 2)) -> Path:
    """Arm a diverges at LR 0.1 on every seed, arm b never: b's sensitivity is lower."""
    claim = load_claim(claim_dir / "demo.yaml")
    scratch, records = tmp / "scratch", tmp / "out" / "runs"
    for arm, mlp, final in (("a", "relu", 3.0), ("b", "gelu", 2.9)):
        for seed in seeds:
            for lr in (0.001, 0.01, 0.1):
                over = {"model/size": "tiny", "logger": "none", "train.max_steps": 2,
                        "train.ckpt_every": 0, "model/mlp": mlp, "optim.lr": lr}  # fmt: skip
                diverged = arm == "a" and lr == 0.1
                name = f"{arm}-{lr}-{seed}"
                run = make_run(scratch, name, seed=seed, final=final + 0.01 * seed,
                               overrides=over, status="diverged" if diverged else "completed",
                               diverged_at=40 if diverged else None)  # fmt: skip
                summary = json.loads((run / "summary.json").read_text())
                summary["provenance"] = dict(prov or PROV)
                summary["run_dir"] = str(run)
                (run / "summary.json").write_text(json.dumps(summary))
                dest = R.claim_records_dir(records, claim) / R.run_name(
                    arm, summary["overrides"], claim
                )
                R.write_record(run, dest, {"layout": {"jobs": 1, "threads": 2}})
    return records


def test_record_contents_and_size(tmp_path):
    claims = write_claim(tmp_path)
    records = make_records(tmp_path, claims)
    claim = load_claim(claims / "demo.yaml")
    dirs = R.record_dirs(records, claim)
    assert len(dirs) == 18 and dirs[0].name == "a-lr0.001-s0"
    assert R.check_sizes(records, claim, limit_kb=50) == []
    rec = dirs[0]
    summary = json.loads((rec / "summary.json").read_text())
    assert "run_dir" not in summary and summary["record"]["layout"] == {"jobs": 1, "threads": 2}
    with gzip.open(rec / "metrics.jsonl.gz", "rt") as f:
        assert f.read() == (tmp_path / "scratch" / "a-0.001-0" / "metrics.jsonl").read_text()
    (rec / "last.ckpt").write_bytes(b"x")  # a checkpoint in a record is reported
    assert any("unexpected files" in p for p in R.check_sizes(records, claim))


def test_report_only_is_a_pure_function_of_the_records(tmp_path, monkeypatch):
    claims = write_claim(tmp_path)
    make_records(tmp_path, claims)
    env = {"ARCHLAB_CLAIMS_DIR": str(claims)}
    args = ("reproduce", "demo", "--report-only", "--out", str(tmp_path / "out"))
    res = run_cli(*args, cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    results = tmp_path / "out" / "results"
    md, js = (results / "demo.md").read_text(), (results / "demo.json").read_text()
    assert json.loads(js)["verdict"] == "reproduced"  # known answer: a diverges at LR 0.1
    assert "| a | 0.1 | 3 | 3/3 |" in md and "| b | 0.1 | 3 | 0/3 |" in md
    for text in (md, js, (results / "demo" / "report.md").read_text()):
        assert str(tmp_path) not in text and "load average" not in text
        assert not re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d", text)
    assert "`../../runs/demo`" in (results / "demo" / "report.md").read_text()
    from archlab.claims import campaign

    monkeypatch.setenv("ARCHLAB_CLAIMS_DIR", str(claims))  # the same again, in this process
    assert campaign.main(list(args[1:])) == 0
    assert (results / "demo.md").read_text() == md and (results / "demo.json").read_text() == js


def test_benchmark_is_measured_once_into_the_records_and_reports_read_it(tmp_path, monkeypatch):
    """A claim's micro-benchmarks are timed once, after its runs, into a record beside them;
    the report renders that record (--report-only never times anything)."""
    from archlab import microbench
    from archlab.claims import bench as B
    from archlab.claims import campaign

    claims = write_claim(tmp_path)
    text = (claims / "demo.yaml").read_text() + "benchmark: [norm_ops, blocks]\n"
    (claims / "demo.yaml").write_text(text)
    records = make_records(tmp_path, claims)
    claim = load_claim(claims / "demo.yaml")
    dest = R.claim_records_dir(records, claim)
    measured = B.measure(claim, dest, smoke=True, threads=1, log=lambda m: None)
    assert measured == ["norm_ops", "blocks"]
    norm = B.read_record(dest, "norm_ops")
    row = norm["result"]["rows"][0]
    assert row["shape"] == [16, 64, 64]  # the claim's (batch 16, T, d_model): model/size=tiny
    assert set(row["ms"]) == {"F.layer_norm", "archlab LayerNorm", "F.rms_norm", "archlab RMSNorm"}
    assert all(ms > 0 for ms in row["ms"].values()) and norm["machine"]["threads"] == 1
    blocks = B.read_record(dest, "blocks")["result"]["rows"][0]
    assert blocks["shape"] == [16, 64, 64] and set(blocks["ms"]) == {"serial", "parallel"}
    assert B.measure(claim, dest, smoke=True, threads=1) == []  # recorded: not timed again

    def no_timing(*a, **k):
        raise AssertionError("a report timed a benchmark")

    monkeypatch.setattr(microbench, "norm_bench", no_timing)
    monkeypatch.setattr(microbench, "block_bench", no_timing)
    monkeypatch.setenv("ARCHLAB_CLAIMS_DIR", str(claims))
    out = ["demo", "--report-only", "--out", str(tmp_path / "out")]
    assert campaign.main(out) == 0
    md = (tmp_path / "out" / "results" / "demo.md").read_text()
    assert "## Micro-benchmarks" in md and "| claim (16, 64, 64) |" in md and "F.rms_norm" in md
    assert "fused GEMM" in md and "1 thread(s)" in md and "`benchmark-norm_ops.json`" in md
    js = (tmp_path / "out" / "results" / "demo.json").read_text()
    for text in (md, js):  # the record's time and load stay in the record
        assert "load_after" not in text and "measured_at" not in text
        assert not re.search(r"\d{4}-\d\d-\d\d", text)
    from archlab.runs.values import stable_floats

    assert json.loads(js)["benchmarks"][0]["result"] == stable_floats(norm["result"])
    assert campaign.main(out) == 0
    assert (tmp_path / "out" / "results" / "demo.md").read_text() == md
    B.record_path(dest, "blocks").unlink()  # not measured: the report says so, times nothing
    assert campaign.main(out) == 0
    assert "`blocks`: not measured yet" in (tmp_path / "out" / "results" / "demo.md").read_text()


def test_summary_says_what_changed_from_the_legacy_run(tmp_path, monkeypatch):
    """The README's "Against the 150-step runs" table: the legacy report's verdict (linked),
    the new verdict and the claim's vs_legacy text, with a | that must not split the cell."""
    claims = write_claim(tmp_path)
    text = (claims / "demo.yaml").read_text()
    (claims / "demo.yaml").write_text(text + 'vs_legacy: "The old run judged |log Z| < 1."\n')
    make_records(tmp_path, claims)
    legacy = tmp_path / "out" / "results" / "legacy"
    legacy.mkdir(parents=True)
    (legacy / "demo.md").write_text("# Claim\n\n**Verdict: ❌ not reproduced**\n\nHeadline: …\n")
    from archlab.claims import campaign

    monkeypatch.setenv("ARCHLAB_CLAIMS_DIR", str(claims))
    assert campaign.main(["demo", "--report-only", "--out", str(tmp_path / "out")]) == 0
    table = (tmp_path / "out" / "results" / "README.md").read_text()
    section = table[table.index("## Against the 150-step runs") :]
    row = next(line for line in section.splitlines() if line.startswith("| demo |"))
    assert row == (
        "| demo | [❌ not reproduced](legacy/demo.md) | ✅ reproduced | "
        "The old run judged \\|log Z\\| < 1. |"
    )


def test_partial_records_report_in_progress_not_a_verdict(tmp_path):
    """2 of 3 seeds recorded: the interim checks are shown, the verdict is "in progress"."""
    claims = write_claim(tmp_path)
    make_records(tmp_path, claims, seeds=(0, 1))
    env = {"ARCHLAB_CLAIMS_DIR": str(claims)}
    res = run_cli("reproduce", "demo", "--report-only", "--out", str(tmp_path / "out"),
                  cwd=tmp_path, env=env)  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    results = tmp_path / "out" / "results"
    summary = json.loads((results / "demo.json").read_text())
    assert summary["verdict"] == "in progress" and summary["interim_verdict"] == "reproduced"
    assert summary["progress"] == {"recorded": 12, "planned": 18}
    md = (results / "demo.md").read_text()
    assert "**Verdict: ⏳ in progress**" in md and "12 of 18 planned runs" in md
    assert "Interim verdict: **reproduced**" in md
    table = (results / "README.md").read_text()
    assert "⏳ in progress (12/18 runs)" in table


def test_pooling_refusal_at_report_and_before_training(tmp_path):
    claims = write_claim(tmp_path)
    make_records(tmp_path, claims, prov={**PROV, "torch": "2.99.0"}, seeds=(0,))
    make_records(tmp_path / "other", claims, seeds=(1, 2))
    for src in (tmp_path / "other" / "out" / "runs" / "demo").iterdir():
        src.rename(tmp_path / "out" / "runs" / "demo" / src.name)
    env = {"ARCHLAB_CLAIMS_DIR": str(claims)}
    res = run_cli("reproduce", "demo", "--report-only", "--out", str(tmp_path / "out"),
                  cwd=tmp_path, env=env)  # fmt: skip
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr[-2000:]
    assert "refusing to pool" in res.stderr and "torch" in res.stderr
    # before training: this machine's torch/numerics/CPU differ from the recorded runs'
    claim = load_claim(claims / "demo.yaml")
    with pytest.raises(R.ClaimError, match="cannot add runs to its 18 records"):
        R.refuse_incompatible(claim, tmp_path / "out" / "runs", dict(PROV, numerics=3))


@pytest.mark.parametrize(
    "key, other, refused",
    [("python", "3.12.1", True), ("threads", 1, False), ("cpu", "Other CPU", False),
     ("commit", "def456", False)],
)  # fmt: skip
def test_pooling_refuses_other_pythons_but_lists_commits_cpus_and_threads(key, other, refused):
    """A commit with the same numerics version is result-neutral; a CPU model or thread count
    only reorders float sums (pooled, listed); another Python is refused."""
    from types import SimpleNamespace

    from archlab.claims.runner import refuse_mixed_provenance

    claim = SimpleNamespace(id="demo")
    recs = {
        "a": [SimpleNamespace(summary={"provenance": PROV})],
        "b": [SimpleNamespace(summary={"provenance": {**PROV, key: other}})],
    }
    if not refused:
        refuse_mixed_provenance(claim, recs)
        return
    with pytest.raises(R.ClaimError, match=f"refusing to pool runs: pooled runs differ in {key}"):
        refuse_mixed_provenance(claim, recs)


def test_corpus_pin_refused_with_one_line(tmp_path):
    claims = write_claim(tmp_path)
    pin = tmp_path / "pin.json"
    pin.write_text(json.dumps({"data": "stdlib", "fingerprint": "0123456789abcdef",
                               "python": "3.99.0"}))  # fmt: skip
    env = {"ARCHLAB_CLAIMS_DIR": str(claims), "ARCHLAB_CORPUS_PIN": str(pin)}
    out = tmp_path / "out"
    res = run_cli("reproduce", "demo", "--out", str(out), cwd=tmp_path, env=env)
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr[-2000:]
    assert "is not the campaign's pinned corpus 0123456789abcdef" in res.stderr
    assert "Python 3.99.0" in res.stderr and not out.exists()


def test_corpus_pin_per_source_one_corpus_per_claim(tmp_path, monkeypatch):
    """A file corpus is refused until pinned beside the campaign's; then its own content hash
    decides; a claim mixing corpora is refused; an existing entry is never changed."""
    from archlab.claims import pin as P
    from archlab.compose import compose

    monkeypatch.setenv("ARCHLAB_CACHE", str(tmp_path / "cache"))
    text = tmp_path / "play.txt"
    text.write_text("To be, or not to be, that is the question.\n" * 200)
    base = ["model/size=tiny", "logger=none", f"data.cache_dir={tmp_path / 'cache'}"]
    stdlib = compose(base, check=False).data
    play = compose([*base, "data=text", f"data.path={text}"], check=False).data
    pin_path = tmp_path / "corpus-pin.json"
    pin_path.write_text(json.dumps({"data": "stdlib", "fingerprint": "077ae9007b03b249"}))
    with pytest.raises(ClaimError, match=r"data.path=.*play.txt is not pinned.*--pin-corpus demo"):
        P.check("demo", [play], P.read_pin(pin_path), pin_path)
    entry = P.add_source(play, pin_path)
    assert entry["fingerprint"] == P.corpus_hash(play) and entry["path"] == str(text)
    assert P.add_source(play, pin_path) is None  # pinned already: unchanged
    assert P.check("demo", [play, play], P.read_pin(pin_path), pin_path) == entry["fingerprint"]
    with pytest.raises(ClaimError, match="trains? on 2 corpora.*one corpus per claim"):
        P.check("demo", [play, stdlib], _pinned_both(pin_path, stdlib), pin_path)
    text.write_text("Something else entirely.\n" * 200)  # the file changed under its pin
    with pytest.raises(
        ClaimError, match=f"is not the campaign's pinned corpus {entry['fingerprint']}"
    ):
        P.check("demo", [play], P.read_pin(pin_path), pin_path)


def _pinned_both(pin_path: Path, stdlib_cfg) -> dict:
    """The pin with the stdlib entry's fingerprint set to this interpreter's corpus hash."""
    from archlab.claims import pin as P

    pin = P.read_pin(pin_path)
    pin["fingerprint"] = P.corpus_hash(stdlib_cfg)
    return pin


def test_plan_from_calibration_and_records(tmp_path):
    import torch  # noqa: F401  (machine_key names the torch version)

    from archlab.claims.layout import CALIBRATION, machine_key
    from archlab.claims.minimums import load_campaign
    from archlab.claims.plan import print_plan

    claims = write_claim(tmp_path, seeds=2, hours=0.0001)
    cache = tmp_path / "cache"
    cache.mkdir()
    calib = {"layouts": {"1x2": {"per_job": 1000.0, "total": 1000.0}}, "quiet": True,
             "load_average": 0.1, "measured_at": "2026-12-02T00:00:00"}  # fmt: skip
    (cache / CALIBRATION).write_text(json.dumps({machine_key(): calib}))
    env = {"ARCHLAB_CLAIMS_DIR": str(claims), "ARCHLAB_CACHE": str(cache)}
    args = ("reproduce", "--plan", "demo", "--out", str(tmp_path / "out"), "--jobs", "1")
    args += ("--threads", "2")  # the calibrated layout, whatever campaign.yaml chose
    res = run_cli(*args, cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    # tiny: 2 steps x 16 x 64 tokens + (2 // 100 + 1) evals x 256 windows x 64 / 3, at the
    # rung's rate scaled by FLOPs/token (tiny vs small), + 2 s start-up per job
    assert re.search(
        r"a\s+6\s+2,048\s+\d+\s+calibration 1x2 2026-12-02 \(load 0.1, quiet\)", res.stdout
    )
    assert "total: 12 runs" in res.stdout and "1 job(s) x 2 thread(s)" in res.stdout
    assert (
        "EXPLORATORY (stability minimums): 2 seeds < 3; 3 LR points < 6; 2,048 tokens" in res.stdout
    )
    assert "DOES NOT FIT its budget of 0.0001 CPU-hours" in res.stdout
    records = make_records(tmp_path, claims, seeds=(0, 1))  # elapsed 100 x 1024 / 10k tok/s
    lines: list[str] = []
    claim, layout = load_claim(claims / "demo.yaml"), {"jobs": 1, "threads": 2}
    campaign = load_campaign(tmp_path / "campaign.yaml")
    print_plan([claim], records, campaign, layout, None, log=lines.append)
    out = "\n".join(lines)
    assert re.search(r"a\s+6\s+2,048\s+10\s+records \(4 runs\)", out), out
    assert re.search(r"b\s+6\s+2,048\s+10\s+records \(6 runs\)", out), out
    assert "total: 12 runs, 0.0 h wall at 1 job(s) x 2 thread(s) = 0.1 CPU-hours" in out


def test_plan_counts_busy_cpu_seconds_not_a_loaded_wall_clock(tmp_path):
    """A record's seconds are its CPU-seconds over its threads (load from other work stretches
    only the wall clock); an inconsistent count (more than wall x threads: the early records'
    cumulative one) falls back to the wall clock; a claim without records of its own is
    planned at the rate of every claim's records in the layout."""
    from archlab.claims.minimums import load_campaign
    from archlab.claims.plan import print_plan

    claims = write_claim(tmp_path, seeds=2)
    campaign = load_campaign(tmp_path / "campaign.yaml")
    layout = {"jobs": 1, "threads": 2}
    for cpu, expect in ((0.1, 0.05), (1e6, None)):
        records = make_records(tmp_path / str(cpu), claims, prov={**PROV, "cpu_seconds": cpu})
        wall = json.loads(next(records.glob("demo/*/summary.json")).read_text())["elapsed_sec"]
        lines: list[str] = []
        print_plan(
            [load_claim(claims / "demo.yaml")], records, campaign, layout, None, lines.append
        )
        s_run = float(re.search(r"b\s+6\s+2,048\s+(\S+)\s+records", lines[0]).group(1))
        assert s_run == round(expect if expect is not None else wall)
        if expect is not None:  # another claim, no records of its own: the campaign's rate
            other = (claims / "demo.yaml").read_text().replace("id: demo", "id: other")
            (claims / "other.yaml").write_text(other)
            lines = []
            print_plan([load_claim(claims / "other.yaml")], records, campaign, layout, None,
                       lines.append)  # fmt: skip
            assert "campaign records (15 runs at 1x2, Test CPU)" in lines[0], lines[0]
            (claims / "other.yaml").unlink()
            lines = []  # in another layout those records say nothing: the field notes' rate
            print_plan([load_claim(claims / "demo.yaml")], records / "none", campaign,
                       {"jobs": 2, "threads": 1}, None, lines.append)  # fmt: skip
            assert "half the field notes' rate" in lines[0]


@pytest.mark.slow
def test_two_jobs_one_thread_layout_records_every_run(tmp_path):
    """--jobs 2 --threads 1 trains in two worker processes; each record names its layout."""
    claims = write_claim(tmp_path, seeds=1)
    env = {"ARCHLAB_CLAIMS_DIR": str(claims)}
    args = ("reproduce", "demo", "--smoke", "--out", str(tmp_path / "out"), "--jobs", "2")
    res = run_cli(*args, "--threads", "1", cwd=tmp_path, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    recs = sorted((tmp_path / "out" / "runs" / "demo").glob("*/summary.json"))
    assert len(recs) == 4  # 2 arms x the smoke grid's 2 LRs x 1 seed
    for rec in recs:
        summary = json.loads(rec.read_text())
        assert summary["record"]["layout"] == {"jobs": 2, "threads": 1}
        assert summary["provenance"]["threads"] == 1
