"""archlab compare: grouping, statistics, divergence, LR sensitivity, curves, W&B adapter."""

from __future__ import annotations

import math
import sys
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import stats as sps

from archlab.runs.arms import group_arms
from archlab.runs.compare import CompareError, analyze, compare_runs
from archlab.runs.curves import arm_curve
from archlab.runs.load import find_runs
from archlab.runs.report import table_rows
from archlab.runs.stats import compare_to_baseline, lr_sensitivity, mean_ci, verdict
from archlab.runs.wandb_source import WandbSourceError, load_wandb_runs
from fixtures_runs import AB_BASE, AB_BETTER, LR_FINALS, make_ab_sweep, make_lr_sweep, make_run


def arm(result, label):
    return next(a for a in result["arms"] if a["label"] == label)


def test_arms_grouped_by_differing_keys_with_seeds_pooled(tmp_path):
    # out_dir, name, logger.*, data.cache_dir and trainer.threads all differ per run: ignored.
    result = compare_runs([str(make_ab_sweep(tmp_path))])
    assert result["setup"]["arm_keys"] == ["model.mlp"]
    assert [a["label"] for a in result["arms"]] == ["mlp=swiglu", "mlp=geglu"]
    assert result["baseline"] == "mlp=swiglu"
    base, geglu = result["arms"]
    assert (base["n_runs"], base["n_failed"], base["n_diverged"]) == (4, 1, 0)
    assert (geglu["n_runs"], geglu["n_failed"], geglu["n_diverged"]) == (4, 0, 1)
    # geglu's diverged seed 3 is counted (at its loss at init), base's failed seed 3 is not
    assert base["seeds"] == [0, 1, 2] and geglu["seeds"] == [0, 1, 2, 3]
    assert base["params"] == 800_000 and geglu["params"] == 900_000


def test_ambiguous_short_names_use_full_keys(tmp_path):
    make_run(tmp_path, "a", overrides={"model.dropout": 0.0, "data.dropout": 0.0})
    make_run(tmp_path, "b", overrides={"model.dropout": 0.1, "data.dropout": 0.0})
    make_run(tmp_path, "c", overrides={"model.dropout": 0.1, "data.dropout": 0.2})
    arms, keys, lr_sweep = group_arms(find_runs([tmp_path]))
    assert keys == ["data.dropout", "model.dropout"] and not lr_sweep
    assert arms[1].label == "data.dropout=0, model.dropout=0.1"


def test_paired_test_when_seeds_match(tmp_path):
    result = compare_runs([str(make_ab_sweep(tmp_path))])
    diff = arm(result, "mlp=geglu")["diff"]
    seeds = sorted(AB_BASE)
    a, b = [AB_BETTER[s] for s in seeds], [AB_BASE[s] for s in seeds]
    d = np.subtract(a, b)
    half = sps.t.ppf(0.975, 2) * d.std(ddof=1) / math.sqrt(3)
    assert diff["test"] == "paired" and diff["n_pairs"] == 3
    assert diff["p_value"] == pytest.approx(sps.ttest_rel(a, b).pvalue)
    assert diff["mean"] == pytest.approx(-0.2)
    assert (diff["ci_low"], diff["ci_high"]) == pytest.approx((d.mean() - half, d.mean() + half))


def test_welch_when_seeds_differ(tmp_path):
    base, other = [3.0, 3.1, 2.95], [2.9, 3.05, 2.8, 2.85]
    for s, v in enumerate(base):
        make_run(tmp_path, f"a{s}", seed=s, final=v)
    for s, v in enumerate(other):
        make_run(tmp_path, f"b{s}", seed=10 + s, final=v, overrides={"model.norm": "layernorm"})
    diff = arm(compare_runs([str(tmp_path)]), "norm=layernorm")["diff"]
    assert diff["test"] == "welch"
    assert diff["p_value"] == pytest.approx(sps.ttest_ind(other, base, equal_var=False).pvalue)
    assert diff["mean"] == pytest.approx(np.mean(other) - np.mean(base))
    assert diff["ci_low"] < diff["mean"] < diff["ci_high"]


def test_mean_ci_and_seed_noise(tmp_path):
    result = compare_runs([str(make_ab_sweep(tmp_path))])
    vals = list(AB_BASE.values())
    stat = result["arms"][0]["final_val_loss"]
    half = sps.t.ppf(0.975, 2) * np.std(vals, ddof=1) / math.sqrt(3)
    assert stat["n"] == 3 and stat["mean"] == pytest.approx(np.mean(vals))
    assert stat["ci_high"] - stat["mean"] == pytest.approx(half)
    assert result["seed_noise"] == pytest.approx(np.std(vals, ddof=1))


def test_diverged_counted_at_init_loss_and_failed_listed(tmp_path):
    result = compare_runs([str(make_ab_sweep(tmp_path))])
    geglu = arm(result, "mlp=geglu")
    [diverged] = [r for r in find_runs([tmp_path]) if r.status == "diverged"]
    expected = np.mean([*AB_BETTER.values(), diverged.loss_at_init()])
    assert geglu["final_val_loss"]["mean"] == pytest.approx(expected)
    assert geglu["n_diverged_compared"] == 1
    # Clearly better on the surviving seeds, but a diverged seed makes it unstable.
    assert (geglu["verdict"], geglu["test_verdict"]) == ("unstable", "better")
    assert [r["seed"] for r in result["diverged_runs"]] == [3]
    assert result["diverged_runs"][0]["diverged_at_step"] == 40
    [failed] = result["failed_runs"]
    assert failed["arm"] == "mlp=swiglu" and "out of memory" in failed["error"]


def test_verdicts_clear_difference_and_pure_noise(tmp_path):
    for s, v in AB_BASE.items():
        make_run(tmp_path, f"a{s}", seed=s, final=v)
        make_run(
            tmp_path,
            f"b{s}",
            seed=s,
            final=v + (0.3, 0.28, 0.33)[s],
            overrides={"model.mlp": "gelu"},
        )
        make_run(
            tmp_path,
            f"c{s}",
            seed=s,
            final=v + (0.01, -0.012, 0.003)[s],
            overrides={"model.mlp": "relu"},
        )
    result = compare_runs([str(tmp_path)])
    assert arm(result, "mlp=gelu")["verdict"] == "worse"
    assert arm(result, "mlp=relu")["verdict"] == "no significant difference"


def test_baseline_option_and_errors(tmp_path):
    sweep = str(make_ab_sweep(tmp_path))
    assert compare_runs([sweep], baseline="mlp=geglu")["baseline"] == "mlp=geglu"
    assert compare_runs([sweep], baseline="model.mlp=geglu")["arms"][1]["label"] == "mlp=swiglu"
    with pytest.raises(CompareError, match="unknown baseline key"):
        compare_runs([sweep], baseline="norm=rmsnorm")
    with pytest.raises(CompareError, match="no arm matches"):
        compare_runs([sweep], baseline="mlp=relu")


def test_stats_edge_cases_say_na():
    assert mean_ci([3.0]).ci_low is None and mean_ci([]).mean is None
    assert mean_ci([1.0, float("nan"), 2.0]).n == 2
    same = compare_to_baseline({0: 3.1, 1: 3.2}, {0: 3.0, 1: 3.1})  # identical differences
    assert same.test == "paired" and same.p_value is None and same.mean == pytest.approx(0.1)
    single = compare_to_baseline({0: 3.1}, {1: 3.0, 2: 3.2})
    assert single.test == "none" and single.p_value is None
    assert verdict(single, 0.05, diverged=0) == ("n/a", "n/a")


def test_lr_sensitivity_hand_computed(tmp_path):
    result = compare_runs([str(make_lr_sweep(tmp_path, init=4.2))])
    assert result["setup"]["lr_sweep"] and result["setup"]["arm_keys"] == ["model.qk_norm"]
    none, ln = arm(result, "qk_norm=none"), arm(result, "qk_norm=layernorm")
    assert none["loss_at_init"] == pytest.approx(4.2)
    # qk_norm=none seed means: 3.41, 3.11, 3.32 and 4.2 (both seeds diverged -> loss at init)
    assert none["lr_sensitivity"] == pytest.approx((3.41 + 3.11 + 3.32 + 4.2) / 4 - 3.11)
    assert ln["lr_sensitivity"] == pytest.approx((3.39 + 3.09 + 3.06 + 3.22) / 4 - 3.06)
    assert (none["lr"], ln["lr"]) == (3e-3, 1e-2)  # each arm compared at its best LR
    assert none["n_diverged"] == 2 and none["n_diverged_compared"] == 0
    top = {g["lr"]: g for g in none["lr_grid"]}[3e-2]
    assert (top["n"], top["n_diverged"], top["mean"]) == (2, 2, None)
    assert set(LR_FINALS) == {"none", "layernorm"}


def test_arms_each_at_their_own_lr_are_compared_on_every_seed(tmp_path):
    # a tuned claim's confirm runs: each arm at its one picked LR. That is not an LR sweep:
    # no seed may be spent picking an LR again (it used to drop the first seed of three).
    for seed, eps in ((0, 0.01), (1, -0.02), (2, 0.005)):
        make_run(
            tmp_path,
            f"a_s{seed}",
            seed=seed,
            final=3.0 + eps,
            overrides={"model.mlp": "gelu", "optim.lr": 3e-3},
        )
        make_run(
            tmp_path,
            f"b_s{seed}",
            seed=seed,
            final=2.9 + eps + 0.001 * seed,
            overrides={"model.mlp": "relu", "optim.lr": 1.5e-3},
        )
    result = compare_runs([str(tmp_path)], baseline="mlp=gelu")
    assert not result["setup"]["lr_sweep"] and result["setup"]["lr_by_arm"]
    relu = arm(result, "mlp=relu")
    assert relu["lr"] == 1.5e-3 and relu["diff"]["n_pairs"] == 3
    assert relu["diff"]["mean"] == pytest.approx(-0.1 + 0.001, abs=1e-9)
    header, rows = table_rows(result)
    assert "lr" in header and "tuned lr" not in header
    assert rows[1][header.index("lr")] == "0.0015"


def test_lr_sensitivity_formula():
    # final(lr) above the init loss is clipped to it; diverged (None) counts as init.
    assert lr_sensitivity({1: [3.0], 2: [5.0], 3: [None]}, 4.0) == pytest.approx(
        (3 + 4 + 4) / 3 - 3
    )
    assert lr_sensitivity({1: [None]}, 4.0) is None
    assert lr_sensitivity({1: [3.0]}, None) is None


def test_curves_aligned_on_union_step_grid(tmp_path):
    make_run(tmp_path, "a", seed=0, final=3.0, log_every=10)
    make_run(tmp_path, "b", seed=1, final=3.2, log_every=20, tokens_per_sec=5000.0)
    runs = find_runs([tmp_path])
    curve = arm_curve(runs, "train/loss")
    assert curve["step"] == list(range(0, 101, 10))
    # step 10 is interpolated for seed b between its steps 0 and 20
    a10 = 3.0 + 1.2 * math.exp(-10 / 25)
    b10 = np.interp(10, [0, 20], [4.2, 3.2 + 1.0 * math.exp(-20 / 25)])
    assert curve["mean"][1] == pytest.approx((a10 + b10) / 2)
    assert (curve["lo"][1], curve["hi"][1]) == pytest.approx(sorted([a10, b10]))
    assert curve["n"] == [2] * 11
    # time: per-seed x values averaged at each step (b is twice as slow)
    assert curve["time"][-1] == pytest.approx((100 * 1024 / 10000 + 100 * 1024 / 5000) / 2)


def test_flops_derived_from_summary_or_omitted(tmp_path):
    make_run(tmp_path / "s", "a", flops="summary")
    [run] = find_runs([tmp_path / "s"])
    curve = arm_curve([run], "train/loss")
    assert curve["flops"][-1] == pytest.approx(curve["tokens"][-1] * 1.5e6)
    make_run(tmp_path / "n", "a", flops="none")
    assert "flops" not in arm_curve(find_runs([tmp_path / "n"]), "train/loss")


def test_unreadable_runs_are_skipped_with_warning(tmp_path):
    make_run(tmp_path, "good")
    bad = make_run(tmp_path, "bad")
    (bad / "summary.json").write_text("{not json")
    (tmp_path / "empty").mkdir()
    warnings = []
    runs = find_runs([tmp_path, tmp_path / "empty"], warn=warnings.append)
    assert [r.source.rsplit("/", 1)[-1] for r in runs] == ["good"]
    assert len(warnings) == 2 and "bad" in warnings[0] and "empty" in warnings[1]
    with pytest.raises(CompareError, match="no runs found"):
        analyze([])


class FakeRun:
    def __init__(self, mlp, seed, final, state="finished"):
        self.config = {
            "model": {"mlp": mlp},
            "optim": {"lr": 0.003},
            "seed": seed,
            "_wandb": {"cli_version": "0.31"},
        }
        self.summary = {"val_loss": final, "params": 1000, "tokens_per_sec": 5.0, "_runtime": 3}
        self.state, self.path = state, ["ent", "proj", f"{mlp}{seed}"]
        self._final = final

    def scan_history(self):
        return [
            {
                "_step": i,
                "trainer/global_step": 10 * i,
                "train/loss": 4.0 - i * 0.1,
                "val/loss": None if i < 2 else self._final,
            }
            for i in range(3)
        ]


class FakeApi:
    def __init__(self):
        self.calls = []

    def runs(self, path, filters=None):
        self.calls.append((path, filters))
        return (
            [FakeRun("swiglu", s, 3.0 + 0.01 * s) for s in range(3)]
            + [FakeRun("gelu", s, 3.2 + 0.02 * s) for s in range(3)]
            + [FakeRun("gelu", 9, None, "crashed")]
        )


def test_wandb_adapter_with_fake_api(monkeypatch):
    api = FakeApi()
    monkeypatch.setitem(sys.modules, "wandb", SimpleNamespace(Api=lambda **kw: api))
    records = load_wandb_runs("ent/proj/grp")
    assert api.calls == [("ent/proj", {"group": "grp"})]
    assert "_wandb" not in records[0].config and "_runtime" not in records[0].summary
    assert records[0].metrics[1]["step"] == 10 and records[0].loss_at_init() == 4.0
    assert records[-1].status == "failed" and "crashed" in records[-1].summary["error"]
    result = analyze(records).result
    assert [a["label"] for a in result["arms"]] == ["mlp=swiglu", "mlp=gelu"]
    assert arm(result, "mlp=gelu")["diff"]["test"] == "paired"
    assert arm(result, "mlp=gelu")["verdict"] == "worse" and len(result["failed_runs"]) == 1


def test_wandb_adapter_errors_are_one_line():
    class Broken:
        def runs(self, *a, **k):
            raise ConnectionError("offline\nsecond line")

    with pytest.raises(WandbSourceError) as err:
        load_wandb_runs("ent/proj/grp", api=Broken())
    assert "\n" not in str(err.value) and "ConnectionError: offline" in str(err.value)
    with pytest.raises(WandbSourceError, match="ENTITY/PROJECT/GROUP"):
        load_wandb_runs("ent/proj")
