"""Budgets, the evaluation noise floor, same-token long context and provenance."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from archlab.config import ArchlabConfig, ConfigError, ModelConfig
from archlab.model import Transformer
from archlab.runs.provenance import pooling_differences
from archlab.train import budget
from archlab.train.evaluation import cut_context_losses, long_context, mean_and_se
from archlab.validate import validate, validate_model
from helpers import TINY, run_cli


def model_cfg(**kw) -> ModelConfig:
    cfg = ModelConfig(
        **{"n_layers": 2, "d_model": 32, "n_heads": 4, "block_size": 16, "vocab_size": 64, **kw}
    )
    validate_model(cfg)
    return cfg


class Bigram(torch.nn.Module):
    """Logits depend on the current token only: context length cannot matter."""

    def __init__(self, vocab: int = 64):
        super().__init__()
        torch.manual_seed(0)
        self.table = torch.nn.Embedding(vocab, vocab)

    def forward(self, x):
        return self.table(x)


def test_mean_and_se_known_answer():
    mean, se = mean_and_se(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    assert mean == pytest.approx(2.5) and se == pytest.approx(np.std([1, 2, 3, 4], ddof=1) / 2)
    assert mean_and_se(torch.tensor([3.0]))[1] is None


def test_paired_window_se_known_answer():
    from archlab.runs.stats import paired_window_se

    base = {0: [1.0, 2.0, 3.0, 4.0], 1: [2.0, 2.0, 2.0, 2.0]}
    arm = {0: [1.1, 2.1, 3.1, 4.1], 1: [2.0, 2.2, 2.0, 2.2]}  # seed 0: a constant shift
    var1 = np.var([0.0, 0.2, 0.0, 0.2], ddof=1) / 4
    assert paired_window_se(arm, base) == pytest.approx(np.sqrt((0 + var1) / 2 / 2))
    assert paired_window_se(arm, {}) is None


def test_cut_context_scores_the_same_targets_as_full_context():
    tokens = np.random.default_rng(0).integers(0, 64, 4000)
    report = long_context(Bigram(), tokens, T=16, k=4, batch=8, device="cpu")
    # a bigram model: cut and full context give identical losses on identical targets
    assert report["gain"] == pytest.approx(0.0, abs=1e-6) and report["full"] == pytest.approx(
        report["cut"]
    )
    assert list(report["buckets"]) == ["[0,16)", "[16,32)", "[32,64)"]


def test_cut_context_matches_a_direct_sliding_window_for_a_real_model():
    model = Transformer(model_cfg(position="rope")).eval()
    x = torch.randint(0, 64, (2, 48))
    y = torch.randint(0, 64, (2, 48))
    with torch.no_grad():
        cut = cut_context_losses(model, x, y, T=16, device="cpu")
        assert cut.shape == (2, 32)
        # the first scored target (position 16) in the chunk ending at 20: context x[4:20]
        logits = model(x[:, 4:20])[:, -4]
        ref = torch.nn.functional.cross_entropy(logits, y[:, 16], reduction="none")
    assert torch.allclose(cut[:, 0], ref, atol=1e-5)


def test_learned_positions_give_null_with_a_reason():
    model = Transformer(model_cfg(position="learned")).eval()
    tokens = np.random.default_rng(0).integers(0, 64, 2000)
    report = long_context(model, tokens, T=16, k=2, batch=8, device="cpu")
    assert set(report) == {"null"} and "beyond 16" in report["null"]


def test_budget_steps_known_answers():
    cfg = ArchlabConfig()
    cfg.train.batch_size, cfg.model.block_size = 8, 64
    cfg.train.budget = "tokens:51200"
    assert budget.steps_for(cfg, 1e6) == 100
    cfg.train.budget = "flops:5.12e10"
    assert budget.steps_for(cfg, 1e6) == 100
    cfg.train.budget = "seconds:30"
    assert budget.steps_for(cfg, 1e6, step_seconds=lambda c: 0.25) == 120


def test_budget_validation_is_one_line():
    cfg = ArchlabConfig()
    cfg.train.budget = "steps:100"
    with pytest.raises(ConfigError, match="tokens:<n>, flops:<n> or seconds:<n>"):
        validate(cfg)
    cfg.train.budget, cfg.train.max_steps = "tokens:1e5", 50
    with pytest.raises(ConfigError, match="train.budget=tokens:1e5 and train.max_steps=50 are"):
        validate(cfg)


@pytest.mark.parametrize(
    "overrides, given",
    [
        (["train.max_steps=300"], 300),  # the default's value, given explicitly
        (["experiment=smoke"], 20),  # set by an experiment config
        (["train.max_steps=50"], 50),
    ],
)
def test_budget_and_max_steps_both_given_is_refused_however_composed(overrides, given):
    from archlab.compose import Composer

    line = f"train.budget=tokens:1e6 and train.max_steps={given} are both given: keep one"
    with Composer() as c:
        for order in (
            [*overrides, "train.budget=tokens:1e6"],
            ["train.budget=tokens:1e6", *overrides],
        ):
            with pytest.raises(ConfigError, match=re.escape(line)):
                c.compose(order)
        assert (
            c.compose(overrides).train.max_steps == given
            and c.compose(overrides).train.budget is None
        )


def test_max_steps_resolves_to_300_only_without_a_budget():
    from archlab.compose import compose
    from archlab.config import DEFAULT_MAX_STEPS, TrainConfig

    assert compose([]).train.max_steps == DEFAULT_MAX_STEPS == TrainConfig().max_steps == 300
    budgeted = compose(["train.budget=tokens:1e6"]).train
    assert (budgeted.max_steps, TrainConfig(budget="tokens:1e6").max_steps) == (None, None)
    cfg = compose(["train.budget=tokens:51200", "train.batch_size=8", "model.block_size=64"])
    assert budget.apply(cfg, 1e6)["max_steps"] == cfg.train.max_steps == 100


def test_cli_refuses_budget_with_max_steps_in_one_line(tmp_path):
    r = run_cli("train", "train.max_steps=300", "train.budget=tokens:1e6", f"out_dir={tmp_path}/o",
                cwd=tmp_path)  # fmt: skip
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0, r.stderr[-2000:]
    assert "train.budget=tokens:1e6 and train.max_steps=300 are both given" in r.stderr


def test_pooling_differences_name_the_key():
    class R:
        def __init__(self, numerics):
            self.summary = {"provenance": {"numerics": numerics, "torch": "2.13"}}

    assert pooling_differences([R(1), R(1)]) == []
    [line] = pooling_differences([R(1), R(2)])
    assert "numerics" in line


def test_budget_noise_long_context_and_provenance_end_to_end(tmp_path):
    """One real tiny run through the CLI: everything lands in summary.json."""
    over = [o for o in TINY if not o.startswith("train.max_steps")]
    res = run_cli(
        "train",
        *over,
        "train.budget=tokens:1280",  # 1280 / (8 × 64) = 2.5 -> 2 steps
        "train.eval_context_multiples=[2]",
        "logger=none",
        f"out_dir={tmp_path}",
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    [path] = list(tmp_path.rglob("summary.json"))
    s = json.loads(path.read_text())
    assert s["steps"] == 2 and s["budget"]["kind"] == "tokens"
    assert s["budget"]["achieved"] == 2 * 8 * 64 and s["budget"]["target"] == 1280
    assert s["val_loss_se"] > 0 and len(s["val_window_losses"]) == 8  # data.val_windows=8
    assert np.mean(s["val_window_losses"]) == pytest.approx(s["val_loss"], abs=1e-5)
    lc = s["long_context"]["2x"]
    assert {"full", "cut", "gain", "buckets", "curve"} <= set(lc)
    prov = s["provenance"]
    from archlab.numerics import NUMERICS_VERSION

    assert prov["numerics"] == NUMERICS_VERSION and prov["corpus"] and prov["peak_rss_mb"] > 0
    assert {"commit", "dirty", "torch", "python", "cpu", "threads", "cpu_seconds"} <= set(prov)


def test_claims_runner_refuses_to_pool_other_numerics_but_not_other_commits():
    from archlab.claims.registry import ClaimError
    from archlab.claims.runner import refuse_mixed_provenance
    from archlab.runs.load import RunRecord

    def rec(numerics, commit):
        prov = {"numerics": numerics, "commit": commit, "torch": "2.13", "corpus": "abc"}
        return RunRecord("x", {}, {"provenance": prov})

    class Claim:
        id = "demo"

    refuse_mixed_provenance(Claim, {"a": [rec(2, "c1")], "b": [rec(2, "c2")]})
    with pytest.raises(ClaimError, match="numerics"):
        refuse_mixed_provenance(Claim, {"a": [rec(1, "c1")], "b": [rec(2, "c1")]})


def test_compare_states_the_shared_budget_and_warns_on_equal_steps_unequal_flops():
    from archlab.runs.budget_check import budget_summary
    from archlab.runs.load import RunRecord

    steps = [RunRecord("x", {}, {"status": "completed", "steps": 100}) for _ in range(2)]
    warnings: list[str] = []
    out = budget_summary(steps, [{"flops_per_token": 1.0e6}, {"flops_per_token": 1.1e6}], warnings)
    assert out["shared"] == "equal steps: 100" and "FLOPs per token by 10%" in warnings[0]
    tok = {"kind": "tokens", "target": 1e6, "achieved": 1e6}
    toks = [RunRecord("x", {}, {"status": "completed", "budget": tok}) for _ in range(2)]
    warnings = []
    out = budget_summary(toks, [{"flops_per_token": 1.0e6}, {"flops_per_token": 1.1e6}], warnings)
    assert out["shared"] == "equal tokens: 1e+06" and warnings == []


def test_resume_preflight_of_a_budget_run_leaves_the_step_checks_to_the_budget(tmp_path):
    """A budget run's max_steps is derived at the start: resuming its checkpoint (step 400,
    beyond the old default 300) is not refused as 'below the checkpoint's step'; an explicit
    train.max_steps below it still is."""
    from omegaconf import OmegaConf

    from archlab.compose import compose
    from archlab.numerics import NUMERICS_VERSION
    from archlab.train.checkpoint import FORMAT, VERSION
    from archlab.train.preflight import preflight

    def resume(overrides):
        cfg = compose(overrides)
        path = tmp_path / "last.ckpt"
        config = OmegaConf.to_container(OmegaConf.structured(cfg))
        ckpt = {"format": FORMAT, "version": VERSION, "numerics": NUMERICS_VERSION}
        torch.save({**ckpt, "global_step": 400, "config": config}, path)
        cfg.resume = str(path)
        preflight(cfg, [])

    resume(["train.budget=tokens:1e6"])
    with pytest.raises(ConfigError, match="train.max_steps=300 is below the checkpoint's step 400"):
        resume([])
