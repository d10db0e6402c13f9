"""The claim registry, the checks and verdicts on synthetic runs, and one real smoke reproduce."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
import yaml

from archlab.claims import checks as C
from archlab.claims.registry import ClaimError, find_claims_dir, load_all, load_claim, merge
from archlab.runs.load import find_runs
from archlab.runs.tuning import pick_lr
from fixtures_runs import make_run
from helpers import REPO, run_cli

CLAIMS = REPO / "experiments" / "claims"
CLAIMS_ARG = ("--claims-dir", str(CLAIMS))  # as from a wheel install: claims given explicitly


def arm_data(root: Path, name: str, finals: dict, **kw) -> C.ArmData:
    for seed, final in finals.items():
        make_run(root / name, f"s{seed}", seed=seed, final=final, **kw)
    return C.ArmData(name, find_runs([root / name], warn=lambda m: None))


def noise(seed: int, n: int = 6, base: float = 3.0, sd: float = 0.02) -> dict:
    rng = random.Random(seed)
    return {s: base + rng.gauss(0, sd) for s in range(n)}


RULE_LOWER = [{"check": "lower", "arm": "b", "metric": "val_loss", "margin": 0.005}]


# ----------------------------------------------------------------------------- checks


def test_clear_win_is_reproduced(tmp_path):
    base = noise(1)
    arms = {
        "a": arm_data(tmp_path, "a", base),
        "b": arm_data(tmp_path, "b", {s: v - 0.2 + 0.001 * s for s, v in base.items()}),
    }
    results, verdict = C.evaluate(RULE_LOWER, arms, "a")
    assert results[0].status == C.PASS and verdict == C.REPRODUCED
    assert results[0].numbers["test"] == "paired" and results[0].numbers["diff"] == pytest.approx(
        -0.1975, abs=1e-3
    )
    assert results[0].headline


def test_pure_noise_is_inconclusive(tmp_path):
    arms = {
        "a": arm_data(tmp_path, "a", noise(1, n=3, sd=0.05)),
        "b": arm_data(tmp_path, "b", noise(2, n=3, sd=0.05)),
    }
    results, verdict = C.evaluate(RULE_LOWER, arms, "a")
    assert results[0].status == C.UNKNOWN and verdict == C.INCONCLUSIVE


def test_opposite_significant_effect_is_not_reproduced(tmp_path):
    base = noise(3)
    arms = {
        "a": arm_data(tmp_path, "a", base),
        "b": arm_data(tmp_path, "b", {s: v + 0.1 + 0.002 * s for s, v in base.items()}),
    }
    results, verdict = C.evaluate(RULE_LOWER, arms, "a")
    assert results[0].status == C.FAIL and "wrong side" in results[0].evidence
    assert verdict == C.NOT_REPRODUCED
    higher = C.evaluate_check({"check": "higher", "arm": "b"}, arms, "a")
    assert higher.status == C.PASS


def test_demonstrated_no_effect(tmp_path):
    base = noise(4)
    close = {s: v + 0.0005 * ((-1) ** s) for s, v in base.items()}
    arms = {"a": arm_data(tmp_path, "a", base), "b": arm_data(tmp_path, "b", close)}
    eq, verdict = C.evaluate([{"check": "equivalent", "arm": "b", "margin": "1%"}], arms, "a")
    assert eq[0].status == C.PASS and verdict == C.REPRODUCED
    assert eq[0].numbers["margin"] == pytest.approx(0.03, rel=0.02)
    lower = C.evaluate_check({"check": "lower", "arm": "b", "margin": "1%"}, arms, "a")
    assert lower.status == C.FAIL and "no effect" in lower.evidence
    # a big significant difference is not equivalent
    far = {s: v + 0.1 + 0.001 * s for s, v in base.items()}
    arms["c"] = arm_data(tmp_path, "c", far)
    assert (
        C.evaluate_check({"check": "equivalent", "arm": "c", "margin": "1%"}, arms, "a").status
        == C.FAIL
    )
    # a margin in units of the measured noise is refused: it would grow with the noise
    with pytest.raises(ValueError, match="measured noise"):
        C.resolve_margin("2std", list(base.values()))


def test_small_cost_faster_ratio_and_below(tmp_path):
    base = noise(5)
    arms = {
        "a": arm_data(tmp_path, "a", base, tokens_per_sec=10_000.0),
        "b": arm_data(
            tmp_path,
            "b",
            {s: v + 0.01 + 0.0005 * s for s, v in base.items()},
            tokens_per_sec=12_000.0,
        ),
    }
    assert (
        C.evaluate_check({"check": "small_cost", "arm": "b", "max_cost": "2%"}, arms, "a").status
        == C.PASS
    )
    assert (
        C.evaluate_check({"check": "small_cost", "arm": "b", "max_cost": 0.001}, arms, "a").status
        == C.FAIL
    )
    fast = C.evaluate_check({"check": "faster", "arm": "b"}, arms, "a")
    # identical tokens/s per seed: a deterministic difference counts as exact
    assert fast.status == C.PASS and fast.numbers["ratio"] == pytest.approx(1.2)
    ratio = C.evaluate_check(
        {"check": "ratio_equals", "arm": "b", "metric": "tokens_per_sec", "expected": 1.2},
        arms,
        "a",
    )
    assert ratio.status == C.PASS
    assert (
        C.evaluate_check(
            {"check": "ratio_equals", "arm": "b", "metric": "tokens_per_sec", "expected": 0.5},
            arms,
            "a",
        ).status
        == C.FAIL
    )
    below = C.evaluate_check({"check": "below", "arm": "b", "threshold": 5.0}, arms, "a")
    assert below.status == C.PASS


def test_missing_metric_is_unknown(tmp_path):
    arms = {"a": arm_data(tmp_path, "a", noise(6)), "b": arm_data(tmp_path, "b", noise(7))}
    r = C.evaluate_check(
        {"check": "lower", "arm": "b", "metric": "max:attn/max_logit_missing"}, arms, "a"
    )
    assert r.status == C.UNKNOWN and "not recorded" in r.evidence
    assert (
        C.evaluate_check(
            {
                "check": "ratio_equals",
                "arm": "b",
                "metric": "kv_cache_bytes_per_token",
                "expected": 0.5,
            },
            arms,
            "a",
        ).status
        == C.UNKNOWN
    )


def test_metric_specs(tmp_path):
    run = arm_data(tmp_path, "a", {0: 2.5}).runs[0]
    assert C.metric_value(run, "val_loss") == pytest.approx(2.5)
    assert C.metric_value(run, "max:attn/max_logit/layer0") == 1.0
    assert C.metric_value(run, "params") == 800_000
    assert C.metric_value(run, "first:train/loss") == pytest.approx(4.2)
    assert C.metric_value(run, "val_minus_train") == pytest.approx(
        2.5 - C.metric_value(run, "last3:train/loss")
    )
    run.summary["val_loss_at"] = {"2x": 2.7, "4x": None}
    assert (
        C.metric_value(run, "val_loss_at.2x") == 2.7
        and C.metric_value(run, "val_loss_at.4x") is None
    )


def test_lr_sensitivity_per_seed(tmp_path):
    """Arm b diverges at the high LR on every seed: higher sensitivity than a, paired by seed."""

    def sweep(name, high_lr_status):
        for seed in range(4):
            for lr, final in ((1e-3, 3.1), (1e-2, 3.0), (1e-1, 3.05)):
                diverged = high_lr_status == "diverged" and lr == 1e-1
                make_run(
                    tmp_path / name,
                    f"s{seed}_lr{lr}",
                    seed=seed,
                    final=final + 0.01 * seed,
                    status="diverged" if diverged else "completed",
                    diverged_at=20 if diverged else None,
                    overrides={"optim.lr": lr},
                )
        return C.ArmData(name, find_runs([tmp_path / name], warn=lambda m: None))

    arms = {"post": sweep("post", "diverged"), "pre": sweep("pre", "completed")}
    sens = C.lr_sensitivity_by_seed(arms["post"].runs)
    assert len(sens) == 4 and all(v > 0.3 for v in sens.values())
    picked = pick_lr([(C.run_lr(r), r.final_val_loss()) for r in arms["pre"].runs if r.seed == 0])
    assert picked.lr == pytest.approx(1e-2) and not picked.on_edge
    r, verdict = C.evaluate(
        [{"check": "lr_sensitivity_lower", "arm": "pre", "baseline": "post", "margin": 0.01}],
        arms,
        "post",
    )
    assert r[0].status == C.PASS and verdict == C.REPRODUCED


# ----------------------------------------------------------------------------- registry


def _minimal(**over) -> dict:
    d = {
        "id": "x",
        "claim": "c",
        "sources": ["s"],
        "base": ["model/size=tiny"],
        "arms": {"a": ["model/mlp=gelu"], "b": ["model/mlp=swiglu"]},
        "baseline": "a",
        "seeds": 2,
        "budget": {"steps": 2},
        "metrics": ["val_loss"],
        "rule": [{"check": "lower", "arm": "b"}],
        "scale_note": "n",
    }
    d.update(over)
    return d


def test_registry_validation(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text(yaml.safe_dump(_minimal()))
    claim = load_claim(path)
    jobs = claim.jobs()
    assert [a for a, _ in jobs] == ["a", "b", "a", "b"]  # seed-major, arms interleaved
    assert jobs[0][1] == ["model/size=tiny", "model/mlp=gelu", "seed=0"]
    for bad, msg in [
        ({"baseline": "z"}, "baseline"),
        ({"rule": [{"check": "nope", "arm": "b"}]}, "check"),
        ({"arms": {"a": [], "b": []}}, "same overrides"),
        ({"extra": 1}, "unknown keys"),
        ({"rule": [{"check": "lr_sensitivity_lower", "arm": "b"}]}, "lr_grid"),
        ({"rule": [{"check": "lower", "arm": "b", "margin": "2std"}]}, "measured noise"),
        ({"protocol": "tuned"}, "lr_grid"),
        (
            {
                "lr_grid": [0.001, 0.01],
                "protocol": "tuned",
                "scout_seeds": [0],
                "confirm_seeds": [0],
            },
            "overlap",
        ),
        ({"ladder": [["model/size=tiny"]]}, "ladder"),
    ]:
        path.write_text(yaml.safe_dump(_minimal(**bad)))
        with pytest.raises(ClaimError, match=msg):
            load_claim(path)
    assert merge(["a=1", "b=2"], ["a=3"]) == ["b=2", "a=3"]


def test_claims_are_found_from_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("ARCHLAB_CLAIMS_DIR", raising=False)
    assert find_claims_dir(REPO / "src" / "archlab") == CLAIMS  # the nearest parent holding them
    with pytest.raises(ClaimError, match="--claims-dir"):
        find_claims_dir(tmp_path)
    monkeypatch.setenv("ARCHLAB_CLAIMS_DIR", str(tmp_path))
    assert find_claims_dir(REPO) == tmp_path


def test_claim_ladder_runs_every_arm_on_every_rung(tmp_path):
    path = tmp_path / "x.yaml"
    rungs = [["train.budget=tokens:1e4"], ["train.budget=tokens:2e4"]]
    path.write_text(yaml.safe_dump(_minimal(ladder=rungs)))
    claim = load_claim(path)
    jobs = claim.jobs()
    assert len(jobs) == 2 * 2 * 2  # seeds × rungs × arms
    assert len(claim.arm_signatures()) == 4 and set(claim.arm_signatures().values()) == {"a", "b"}
    top = [o for _, o in jobs if claim.on_top_rung(o)]
    assert len(top) == 4 and all("train.budget=tokens:2e4" in o for o in top)


def test_every_registered_claim_loads_and_composes():
    """Every job of every claim composes with Hydra and passes validation."""
    from archlab.claims.runner import validate_claims

    claims = load_all(CLAIMS)
    assert len(claims) >= 12, [c.id for c in claims]
    assert all(c.path.parent == CLAIMS for c in claims)
    assert validate_claims(claims, (False,)) >= 24  # smoke configs: test_reproduce_all_smoke
    # an unquoted " #" in a YAML plain scalar starts a comment and silently cuts the text
    cut = [c.id for c in claims if not c.claim.rstrip().endswith((".", "?", "!"))]
    assert not cut, f"claim text cut short (quote it in the YAML): {cut}"


# ----------------------------------------------------------------------------- end to end


def test_reproduce_smoke_end_to_end(tmp_path):
    out = tmp_path / "smoke"
    # from a project directory: experiments/claims/ is found from the working directory
    res = run_cli("reproduce", "bias", "--smoke", "--out", str(out), cwd=REPO / "src", timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    md = (out / "results" / "bias.md").read_text()
    assert "Verdict:" in md and "SMOKE" in md and "trained the runs" in md and "fingerprint" in md
    summary = json.loads((out / "results" / "bias.json").read_text())
    assert summary["verdict"] in (C.REPRODUCED, C.NOT_REPRODUCED, C.INCONCLUSIVE)
    runs = summary["runs"]["completed"] + summary["runs"]["diverged"]
    assert runs == 4  # 2 arms x 2 smoke LRs x 1 smoke seed
    assert (out / "results" / "bias" / "compare.json").exists()
    # each finished run is a compact record: config, summary with provenance, gzipped metrics
    records = sorted((out / "runs" / "bias").glob("*/summary.json"))
    assert len(records) == 4 and (out / "runs" / "bias" / "preregistration.json").exists()
    for rec in records:
        files = sorted(p.name for p in rec.parent.iterdir())
        assert files == ["config.yaml", "metrics.jsonl.gz", "summary.json"], files
        assert sum(p.stat().st_size for p in rec.parent.iterdir()) < 100_000
        assert json.loads(rec.read_text())["provenance"]["numerics"] >= 1
    # another machine: no scratch, only the records: nothing trains, the report is the same
    shutil.rmtree(out / "scratch")
    again = run_cli(
        "reproduce", "bias", "--smoke", "--out", str(out), *CLAIMS_ARG, cwd=tmp_path, timeout=240
    )
    assert again.returncode == 0, again.stderr[-2000:]
    assert "4 recorded run(s) restored" in again.stdout and "trained 0, skipped 4" in again.stdout
    assert (out / "results" / "bias.md").read_text() == md
    bad = run_cli("reproduce", "no_such_claim", *CLAIMS_ARG, cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "unknown claim" in bad.stderr
    lost = run_cli("reproduce", "bias", cwd=tmp_path)  # no claims here or above, none given
    assert lost.returncode == 2 and lost.stderr.count("\n") == 1 and "--claims-dir" in lost.stderr


@pytest.mark.slow  # ~10 min on 2 cores (every claim's smoke: ladders, scouts, pilots); .ci/run runs it
def test_reproduce_all_smoke(tmp_path):
    """CI runs the reduced (--smoke) version of every registered claim end to end."""
    res = run_cli(
        "reproduce",
        "all",
        "--smoke",
        "--out",
        str(tmp_path),
        *CLAIMS_ARG,
        cwd=tmp_path,
        timeout=2400,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    claims = sorted(p.stem for p in (REPO / "experiments" / "claims").glob("*.yaml"))
    assert len(claims) >= 12
    for claim in claims:
        report = (tmp_path / "results" / f"{claim}.md").read_text()
        assert "**Verdict:" in report, claim
    # a ladder claim counts and times the runs of every rung, not only the top one's, and lists
    # the tokens per run of each kind (scouts, top rung, lower rungs) instead of the first's
    glu = (tmp_path / "results" / "glu.md").read_text()
    n_runs = len(list((tmp_path / "runs" / "glu").glob("*/summary.json")))
    top = len(list((tmp_path / "runs" / "glu").glob("*-r1-*/summary.json")))
    assert f"- Runs: {n_runs} (" in glu and f"; {top} on the top rung" in glu and top < n_runs
    assert "- Tokens per run: " in glu and glu.count(" runs, ") >= 1 and "\\u" not in glu


TUNED_CLAIM = """
id: tuned_demo
claim: demo of the tuned protocol
sources: [none]
base: [model/size=tiny, logger=none, train.max_steps=3, train.batch_size=4, train.log_every=1,
       train.val_every=3, train.ckpt_every=0, data.val_windows=4, optim.warmup_steps=1]
arms: {relu: [model/mlp=relu], gelu: [model/mlp=gelu]}
baseline: relu
seeds: 2
lr_grid: [0.001, 0.003, 0.01]
protocol: tuned
scout_seeds: [0]
confirm_seeds: [1]
budget: {steps: 3}
metrics: [val_loss]
rule:
  - {check: non_inferior, arm: gelu, metric: val_loss, margin: MARGIN}
scale_note: a pipeline test
"""


@pytest.mark.slow
def test_tuned_protocol_scout_pick_confirm_resume_and_preregistration(tmp_path):
    claims = tmp_path / "claims"
    claims.mkdir()
    (claims / "tuned_demo.yaml").write_text(TUNED_CLAIM.replace("MARGIN", "1%"))
    env = {"ARCHLAB_CLAIMS_DIR": str(claims)}
    args = ("reproduce", "tuned_demo", "--out", str(tmp_path / "out"), "--threads", "1")
    res = run_cli(*args, cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    sweep = tmp_path / "out" / "scratch" / "sweeps" / "claim-tuned_demo"
    picks = json.loads((sweep / "lr_pick.json").read_text())["picks"]
    recorded = tmp_path / "out" / "runs" / "tuned_demo"  # the pick is recorded with the runs
    assert json.loads((recorded / "lr_pick.json").read_text())["picks"] == picks
    assert len(list(recorded.glob("*/summary.json"))) == 2 * 3 + 2
    assert set(picks) == {"relu", "gelu"} and all(
        p["lr"] in (1e-3, 3e-3, 1e-2) for p in picks.values()
    )
    runs = find_runs([sweep], warn=lambda m: None)
    assert len(runs) == 2 * 3 + 2  # scouts on every grid LR, confirms only at the pick
    confirms = [r for r in runs if r.seed == 1]
    assert {(r.config["model"]["mlp"], r.config["optim"]["lr"]) for r in confirms} == {
        (arm, p["lr"]) for arm, p in picks.items()
    }
    report = (tmp_path / "out" / "results" / "tuned_demo.md").read_text()
    assert "tuned LR" in report and "Pre-registered: hash" in report
    assert "changed after data" not in report
    # resume: nothing to train; an edited margin is flagged as changed after the data
    (claims / "tuned_demo.yaml").write_text(TUNED_CLAIM.replace("MARGIN", "5%"))
    res = run_cli(*args, cwd=tmp_path, env=env)
    assert res.returncode == 0 and "trained 0, skipped 8" in res.stdout
    assert (
        "changed after data: rule" in (tmp_path / "out" / "results" / "tuned_demo.md").read_text()
    )


def test_lr_table_keeps_scouts_and_confirms_apart(tmp_path):
    # a tuned claim's scouts run shorter than its confirms: one mean over both lengths at the
    # picked LR would be neither number, so the table gives each length its own row
    from archlab.claims.grid_table import grid_lines

    for seed, lr, steps, final in ((0, 1e-3, 50, 2.0), (0, 3e-3, 50, 1.9), (1, 3e-3, 100, 1.5)):
        make_run(
            tmp_path,
            f"a_s{seed}_{lr}",
            seed=seed,
            final=final,
            steps=steps,
            overrides={"optim.lr": lr},
        )
    for summary in tmp_path.glob("*/summary.json"):  # as a campaign record plans them
        data = json.loads(summary.read_text())
        summary.write_text(json.dumps({**data, "planned_tokens": data["tokens"]}))
    # a long run that diverged early trained fewer tokens than planned: it keeps its row
    long_tokens = json.loads((tmp_path / "a_s1_0.003" / "summary.json").read_text())["tokens"]
    make_run(
        tmp_path,
        "a_s2_0.003",
        seed=2,
        steps=100,
        status="diverged",
        diverged_at=20,
        overrides={"optim.lr": 3e-3},
    )
    bad = tmp_path / "a_s2_0.003" / "summary.json"
    data = json.loads(bad.read_text())
    assert data["tokens"] != long_tokens
    bad.write_text(json.dumps({**data, "planned_tokens": long_tokens}))
    runs = find_runs([tmp_path], warn=lambda m: None)
    path = tmp_path / "x.yaml"
    path.write_text(yaml.safe_dump(_minimal()))
    claim = load_claim(path)
    lines = grid_lines(claim, {"a": runs})
    assert "tokens per run" in lines[4]
    rows = [line for line in lines if line.startswith("| a |")]
    assert len(rows) == 3  # 1e-3 short, 3e-3 short, 3e-3 long (with the diverged run)
    assert [r.split(" | ")[-1].rstrip(" |") for r in rows] == ["2.0000", "1.9000", "1.5000"]
    assert "| 2 | 1/2 |" in rows[2]
    short = runs[0].summary["planned_tokens"]
    one_length = grid_lines(claim, {"a": [r for r in runs if r.summary["planned_tokens"] == short]})
    assert "tokens per run" not in "\n".join(one_length)
