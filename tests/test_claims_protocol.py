"""The quality claims' protocol machinery (issue #18): scouts with their own settings, pilot-
sized confirm seeds (known answers for the formula), ladders under ``protocol: tuned``, and
runs shared between claims with identical configs."""

from __future__ import annotations

import json
import math

import pytest
import yaml

from archlab.claims import records as R
from archlab.claims.protocol import seed_plan
from archlab.claims.registry import ClaimError, load_claim
from archlab.runs.inference import paired_seeds, sd_upper_bound
from archlab.runs.load import find_runs
from fixtures_runs import make_run


def test_sd_upper_bound_known_answers():
    # chi-square with 2 df: ppf(p) = -2 ln(1 - p), so the 80% bound from 3 values is
    # s * sqrt(2 / (-2 ln 0.8))
    assert sd_upper_bound(1.0, 3, 0.8) == pytest.approx(math.sqrt(2 / (-2 * math.log(0.8))))
    assert sd_upper_bound(0.006, 3, 0.8) == pytest.approx(0.006 * 2.1169365, rel=1e-6)
    # more pilot values, a tighter bound; higher confidence, a wider one
    assert sd_upper_bound(1.0, 6, 0.8) < sd_upper_bound(1.0, 3, 0.8) < sd_upper_bound(1, 3, 0.9)


def test_paired_seeds_known_answers_per_test_kind():
    # superiority and non-inferiority: ceil(((z.95 + z.80) * 0.006 / 0.01)^2) + 2 = ceil(2.23) + 2
    assert paired_seeds(0.006, 0.01, "superior") == 5
    assert paired_seeds(0.006, 0.01, "non_inferior") == 5
    # TOST at a true difference of 0: both one-sided tests, z_{1-beta/2} = z.90:
    # ceil(((z.95 + z.90) * 0.6)^2) + 2 = ceil(3.083) + 2
    assert paired_seeds(0.006, 0.01, "equivalent") == 6
    # the SwiGLU - GeLU SD at its 80% bound from 3 pilot pairs, delta 0.01
    assert paired_seeds(sd_upper_bound(0.006, 3, 0.8), 0.01, "superior") == 12
    with pytest.raises(ValueError, match="unknown test"):
        paired_seeds(0.006, 0.01, "lower")


def _tuned(**over) -> dict:
    d = {
        "id": "x",
        "claim": "c",
        "sources": ["s"],
        "base": ["model/size=tiny", "train.max_steps=20"],
        "arms": {"a": ["model/mlp=gelu"], "b": ["model/mlp=swiglu"]},
        "baseline": "a",
        "seeds": 3,
        "budget": {"steps": 20},
        "metrics": ["val_loss"],
        "rule": [{"check": "lower", "arm": "b", "margin": 0.01}],
        "scale_note": "n",
        "protocol": "tuned",
        "lr_grid": [0.001, 0.01],
        "scout_seeds": [0],
        "confirm_seeds": [3, 4, 5, 6, 7],
        "scout_overrides": ["train.max_steps=10"],
        "pilot": {"seeds": [1, 2], "ucb": 0.8},
    }
    d.update(over)
    return d


def test_tuned_jobs_scouts_pilots_confirm_on_every_rung(tmp_path):
    path = tmp_path / "x.yaml"
    rungs = [["model/size=tiny", "train.max_steps=5"], ["model/size=tiny", "train.max_steps=20"]]
    path.write_text(yaml.safe_dump(_tuned(ladder=rungs)))
    claim = load_claim(path)
    jobs = claim.jobs(False, {"a": 0.01, "b": 0.001}, 2)
    scouts = [o for _, o in jobs if "seed=0" in o]
    pilots = [o for _, o in jobs if "seed=1" in o or "seed=2" in o]
    confirm = [o for _, o in jobs if "seed=3" in o or "seed=4" in o]
    assert len(jobs) == len(scouts) + len(pilots) + len(confirm) == 4 + 4 + 8
    assert all("train.max_steps=10" in o for o in scouts)  # scouts' own (shorter) settings
    assert all("train.max_steps=20" in o for o in pilots)  # pilots on the top rung only
    assert sum("train.max_steps=5" in o for o in confirm) == 4  # every rung
    assert all(claim.on_top_rung(o) for o in scouts + pilots)  # scouts belong to the top
    assert not any("seed=5" in o for _, o in jobs)  # n_confirm=2 of the 5 listed
    assert len(claim.jobs(False)) == 4 + 4 + 5 * 2 * 2  # --plan counts the cap
    a_pick = [o for a, o in jobs if a == "a" and "seed=3" in o]
    assert all("optim.lr=0.01" in o for o in a_pick)  # every rung at the arm's pick
    names = {R.run_name(a, o, claim) for a, o in jobs}
    assert len(names) == len(jobs) and "a-r1-lr0.001-s0" in names and "a-r0-lr0.01-s3" in names


@pytest.mark.parametrize(
    "bad, msg",
    [
        ({"pilot": {"seeds": [1]}}, ">= 2 int seeds"),
        ({"pilot": {"seeds": [0, 1]}}, "must not overlap"),
        ({"pilot": {"seeds": [1, 2], "ucb": 1.5}}, "0.5 <= ucb < 1"),
        ({"pilot": {"seeds": [1, 2], "level": 0.8}}, "unknown keys"),
        ({"scout_overrides": "train.max_steps=10"}, "scout_overrides"),
        ({"smoke": {"ladder": [["train.max_steps=1"]]}}, "smoke.ladder"),
    ],
)
def test_tuned_protocol_refusals(tmp_path, bad, msg):
    path = tmp_path / "x.yaml"
    path.write_text(yaml.safe_dump(_tuned(**bad)))
    with pytest.raises(ClaimError, match=msg):
        load_claim(path)


def test_pilot_keys_need_protocol_tuned(tmp_path):
    path = tmp_path / "x.yaml"
    grid = {k: v for k, v in _tuned().items() if k not in ("protocol", "confirm_seeds")}
    grid.pop("scout_seeds")
    path.write_text(yaml.safe_dump(grid))
    with pytest.raises(ClaimError, match="scout_overrides, pilot need protocol: tuned"):
        load_claim(path)


def _pilot_runs(tmp_path, arm_finals: dict[str, dict[int, float]]):
    """Synthetic pilot runs at the picks (a: lr 0.01, b: lr 0.001), mapped to arms."""
    mlp, lr = {"a": "gelu", "b": "swiglu"}, {"a": 0.01, "b": 0.001}
    recs: dict[str, list] = {}
    for arm, finals in arm_finals.items():
        for seed, final in finals.items():
            over = {"model.mlp": mlp[arm], "optim.lr": lr[arm]}
            run = make_run(tmp_path / "sweep", f"{arm}-{seed}", seed=seed, final=final,
                           overrides=over)  # fmt: skip
            recs[arm] = recs.get(arm, []) + find_runs([run], warn=lambda m: None)
    return recs, {"a": {"lr": 0.01}, "b": {"lr": 0.001}}


def test_seed_plan_known_answer_and_cap(tmp_path):
    """Pilot differences -0.01, -0.02, -0.03 (SD 0.01): the 80% bound is 0.021169 and a
    superiority check with delta 0.01 needs ceil((2.48647 * 2.1169)^2) + 2 = 30 seeds; the
    claim lists 5 confirm seeds, so the cap binds."""
    path = tmp_path / "x.yaml"
    path.write_text(yaml.safe_dump(_tuned(pilot={"seeds": [1, 2, 8]})))
    claim = load_claim(path)
    recs, picks = _pilot_runs(
        tmp_path,
        {"a": {1: 3.0, 2: 3.0, 8: 3.0, 0: 2.0}, "b": {1: 2.99, 2: 2.98, 8: 2.97, 0: 9.0}},
    )
    plan = seed_plan(claim, recs, picks, smoke=False)
    (row,) = plan["checks"]
    assert row["sd"] == pytest.approx(0.01) and row["pairs"] == 3  # scout seed 0 left out
    assert row["sd_ucb"] == pytest.approx(0.021169365, rel=1e-6)
    # ((z.95 + z.80) * 0.021169 / 0.01)^2 = 27.707
    assert row["n"] == 30 and row["test"] == "superior" and row["delta"] == 0.01
    assert plan["wanted"] == 30 and plan["cap"] == 5 and plan["capped"]
    assert plan["n"] == 5 and plan["confirm_seeds"] == [3, 4, 5, 6, 7]


def test_seed_plan_floor_and_unsized_checks(tmp_path):
    """A tiny pilot SD asks for fewer than the protocol's 3 seeds: the floor holds; a fact
    check (ratio_equals) is not sized."""
    path = tmp_path / "x.yaml"
    rule = [
        {"check": "non_inferior", "arm": "b", "margin": "1%"},
        {"check": "ratio_equals", "arm": "b", "metric": "params", "expected": 1.0},
    ]
    path.write_text(yaml.safe_dump(_tuned(rule=rule)))
    claim = load_claim(path)
    recs, picks = _pilot_runs(tmp_path, {"a": {1: 3.0, 2: 3.1}, "b": {1: 3.0001, 2: 3.1002}})
    plan = seed_plan(claim, recs, picks, smoke=False)
    sized, fact = plan["checks"]
    assert sized["test"] == "non_inferior" and sized["delta"] == pytest.approx(0.0305)
    assert sized["n"] == 3  # ceil(tiny) + 2
    assert fact["n"] is None and fact["why"] == "not a sized test"
    assert plan["n"] == 3 and not plan["capped"] and plan["confirm_seeds"] == [3, 4, 5]


def test_config_identity_ignores_names_paths_threads_not_seed_or_lr():
    base = {"model": {"mlp": "gelu", "vocab_size": 256}, "optim": {"lr": 0.003}, "seed": 1,
            "name": "claim-a", "out_dir": "/x", "trainer": {"threads": 1, "precision": "32"},
            "data": {"source": "stdlib", "cache_dir": "/c"}, "logger": {"kinds": []}}  # fmt: skip
    other = json.loads(json.dumps(base))
    other.update(name="claim-b", out_dir="/y", data_info={"corpus": "z"})
    other["trainer"]["threads"], other["data"]["cache_dir"] = 2, "/d"
    assert R.config_identity(base) == R.config_identity(other)
    for key, value in (("seed", 2), ("optim", {"lr": 0.006}), ("model", {"mlp": "relu"})):
        assert R.config_identity({**base, key: value}) != R.config_identity(base)


def test_share_records_copies_an_identical_run_and_names_its_source(tmp_path):
    records = tmp_path / "records"
    one, two = tmp_path / "one.yaml", tmp_path / "two.yaml"
    one.write_text(yaml.safe_dump(_tuned(id="one")))
    two.write_text(yaml.safe_dump(_tuned(id="two", arms={"a": ["model/mlp=gelu"], "c": ["model/mlp=relu"]}, rule=[{"check": "lower", "arm": "c"}])))  # fmt: skip
    c1, c2 = load_claim(one), load_claim(two)
    over = ["model/size=tiny", "train.max_steps=20", "model/mlp=gelu", "optim.lr=0.01", "seed=3"]
    run = make_run(tmp_path / "scratch", "r", seed=3, final=2.5)
    R.write_record(run, records / "one" / R.run_name("a", over, c1), {"layout": {"jobs": 2}})
    identity = R.config_identity(yaml.safe_load((run / "config.yaml").read_text()))
    jobs = [("a", over), ("c", [*over[:2], "model/mlp=relu", *over[3:]])]
    ids = {tuple(jobs[0][1]): identity, tuple(jobs[1][1]): "other"}
    shared = R.share_records(c2, records, jobs, False, {"layout": {"jobs": 1}},
                             lambda o: ids[tuple(o)])  # fmt: skip
    assert shared == ["a-lr0.01-s3 ← one/a-lr0.01-s3"]
    summary = json.loads((records / "two" / "a-lr0.01-s3" / "summary.json").read_text())
    assert summary["overrides"] == over  # this claim's job, so the runner maps it to arm a
    assert summary["record"]["shared_from"] == "one/a-lr0.01-s3"
    assert summary["record"]["layout"] == {"jobs": 1} and summary["val_loss"] == 2.5
    assert not (records / "two" / "c-lr0.01-s3").exists()
    # recorded now: not shared twice; and a shared copy is never a source
    assert R.share_records(c2, records, jobs, False, {}, lambda o: ids[tuple(o)]) == []
    assert set(R.record_identities(records, c1).values()) == set()


@pytest.mark.slow  # composes 9 configs through Hydra
def test_plan_counts_a_run_shared_between_claims_once(tmp_path):
    """Two claims with an identical arm (same resolved config, seeds and LRs): the second
    claim's plan does not count that arm's runs again and names the claim they come from."""
    from archlab.claims.plan import print_plan

    for cid, other in (("one", "model/mlp=relu"), ("two", "model/norm=layernorm")):
        arms = {"a": ["model/mlp=swiglu"], "b": [other]}
        (tmp_path / f"{cid}.yaml").write_text(yaml.safe_dump(_tuned(id=cid, arms=arms)))
    claims = [load_claim(tmp_path / f"{c}.yaml") for c in ("one", "two")]
    lines: list[str] = []
    layout = {"jobs": 1, "threads": 2}
    print_plan(claims, tmp_path / "records", {"rung": ["model/size=tiny"]}, layout, None,
               log=lines.append)  # fmt: skip
    one, two = lines[0], lines[1]
    per_claim = 2 + 2 + 5  # scouts (1 seed x 2 LRs), pilots, confirm at the cap
    assert f"total: {2 * per_claim} runs" in one
    assert f"total: {per_claim} runs" in two  # arm a is one's: trained once
    assert f"{per_claim} run(s) shared with one" in two
