"""Every knob option and combination: all pairs train, param counts match the closed form,
cached decoding equals full recomputation, invalid combinations fail with one line, presets."""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import random

import pytest
import torch

from archlab.config import ConfigError, ModelConfig
from archlab.model import Transformer
from archlab.model.attention import ATTENTIONS
from archlab.model.block import BLOCKS
from archlab.model.cache import KVCache
from archlab.model.flops import _mean_span, forward_flops_per_token, param_count
from archlab.model.init import INITS
from archlab.model.mlp import MLPS
from archlab.model.placement import PLACEMENTS
from archlab.model.position import POSITIONS
from archlab.model.window import WINDOWS
from archlab.validate import validate_model

TINY = dict(
    n_layers=4,
    d_model=32,
    n_heads=4,
    block_size=32,
    vocab_size=64,
    sliding_window=5,
    global_every=2,
)
KV = {"mha": None, "gqa": 2, "mqa": 1}

# every option of every knob group (norm and qk_norm as their option files set them)
FACTORS = {
    "norm": [dict(norm="layernorm"), dict(norm="layernorm", norm_bias=False), dict(norm="rmsnorm")],
    "norm_placement": [dict(norm_placement=p) for p in PLACEMENTS],
    "block": [dict(block=b) for b in BLOCKS],
    "mlp": [dict(mlp=m) for m in MLPS],
    "position": [dict(position=p) for p in POSITIONS] + [dict(position="rope", rope_fraction=0.5)],
    "qk_norm": [
        dict(qk_norm="none"),
        dict(qk_norm="rmsnorm"),
        dict(qk_norm="layernorm"),
        dict(qk_norm="rmsnorm", qk_norm_scope="full"),
    ],
    "attention": [dict(attention=a, n_kv_heads=KV[a]) for a in ATTENTIONS],
    "window": [dict(window=w) for w in WINDOWS],
    "init": [dict(init=i) for i in INITS],
    "extras": [
        dict(),
        dict(bias=True, tie_embeddings=False, head_bias=True),
        dict(attn_softcap=20.0, logit_softcap=10.0, scale_embeddings=True),
        dict(mlp_ratio=2.0, norm_weight_offset=1.0, logit_scale=0.5),
        dict(embed_dropout=0.1, attn_dropout=0.1, resid_dropout=0.1),
    ],
}
# pairs no valid config contains: the documented rejections (docs/knobs.md)
REJECTED_PAIRS = {
    (("position", "learned"), ("window", "local_global_nope")),
    (("position", "sinusoidal"), ("window", "local_global_nope")),
}


def make(choice: dict[str, int]) -> ModelConfig:
    kw = dict(TINY)
    for factor, i in choice.items():
        kw.update(FACTORS[factor][i])
    return ModelConfig(**kw)


def _valid(choice) -> bool:
    try:
        validate_model(make(choice))
        return True
    except ConfigError:
        return False


def all_pairs() -> list[dict[str, int]]:
    """A greedy pairwise covering set of valid configs (seeded, so the same every run)."""
    rng = random.Random(0)
    names = list(FACTORS)
    todo = {
        ((a, i), (b, j))
        for a, b in itertools.combinations(names, 2)
        for i in range(len(FACTORS[a]))
        for j in range(len(FACTORS[b]))
    }
    chosen = []
    while todo:
        (a, i), (b, j) = min(todo)  # seed each config with an uncovered pair, fill greedily
        best, best_gain = None, 0
        for _ in range(60):
            choice = {n: rng.randrange(len(FACTORS[n])) for n in names} | {a: i, b: j}
            if not _valid(choice):
                continue
            gain = sum(
                ((x, choice[x]), (y, choice[y])) in todo
                for x, y in itertools.combinations(names, 2)
            )
            if gain > best_gain:
                best, best_gain = choice, gain
        if best is None:  # no valid config holds this pair: it must be a documented rejection
            named = ((a, _label(a, i)), (b, _label(b, j)))
            assert named in REJECTED_PAIRS, f"no valid config found for {named}"
            todo.discard(((a, i), (b, j)))
            continue
        chosen.append(best)
        todo -= {((x, best[x]), (y, best[y])) for x, y in itertools.combinations(names, 2)}
    return chosen


def _label(factor, i):
    return next(iter(FACTORS[factor][i].values()))


PAIRS = all_pairs()


def test_all_pairs_cover_every_option():
    assert 40 <= len(PAIRS) <= 120  # small enough for the budget, big enough to be pairwise
    for factor, options in FACTORS.items():
        assert {c[factor] for c in PAIRS} == set(range(len(options)))


@pytest.mark.parametrize("choice", PAIRS, ids=[f"pair{i}" for i in range(len(PAIRS))])
def test_every_pair_of_options_trains(choice):
    cfg = make(choice)
    validate_model(cfg)
    torch.manual_seed(0)
    model = Transformer(cfg)
    assert model.num_params() == param_count(cfg), cfg
    x = torch.randint(0, 64, (2, 12))
    logits = model(x)
    assert logits.shape == (2, 12, 64)
    loss = torch.nn.functional.cross_entropy(logits.view(-1, 64), torch.roll(x, -1, 1).view(-1))
    loss.backward()
    assert math.isfinite(loss.item())
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


# ------------------------------------------------------------------ KV cache

VARIANTS = {
    "full": dict(),
    "sliding": dict(window="sliding"),
    "local_global": dict(window="local_global"),
    "local_global_nope": dict(window="local_global_nope"),
    "softcap": dict(attn_softcap=5.0, logit_softcap=4.0),
    "sliding_softcap_parallel": dict(window="sliding", attn_softcap=5.0, block="parallel"),
}


@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("position", POSITIONS)
def test_cached_decoding_matches_full_recompute(position, attention):
    for variant, kw in VARIANTS.items():
        cfg = ModelConfig(
            **{**TINY, "n_layers": 2},
            position=position,
            attention=attention,
            n_kv_heads=KV[attention],
            **kw,
        )
        try:
            validate_model(cfg)
        except ConfigError:
            assert variant == "local_global_nope" and position in ("learned", "sinusoidal")
            continue
        torch.manual_seed(0)
        model = Transformer(cfg).eval()
        idx = torch.randint(0, 64, (2, 20))
        with torch.no_grad():
            full = model(idx)
            cache = KVCache(cfg.n_layers)
            steps = [model(idx[:, :7], cache)]  # prefill
            steps += [model(idx[:, t : t + 1], cache) for t in range(7, 12)]  # token by token
            steps.append(model(idx[:, 12:], cache))  # a chunk after decoding
        torch.testing.assert_close(
            torch.cat(steps, dim=1),
            full,
            atol=2e-5,
            rtol=1e-5,
            msg=lambda m, v=variant: f"{v}: {m}",
        )
        assert cache.seen == 20
        kv = KV[attention] or cfg.n_heads
        for layer, k in enumerate(cache.k):
            assert k.shape[1] == kv  # the cache holds n_kv_heads, not n_heads
            local = WINDOWS[cfg.window].is_local(layer, cfg)
            assert k.shape[2] == (cfg.sliding_window - 1 if local else 20), variant


def test_generate_is_seeded_and_greedy_equals_top1():
    model = Transformer(ModelConfig(**TINY)).eval()
    idx = torch.randint(0, 64, (2, 5))
    a = model.generate(
        idx, 8, temperature=1.0, top_p=0.9, generator=torch.Generator().manual_seed(3)
    )
    b = model.generate(
        idx, 8, temperature=1.0, top_p=0.9, generator=torch.Generator().manual_seed(3)
    )
    assert torch.equal(a, b) and a.shape == (2, 13) and torch.equal(a[:, :5], idx)
    greedy = model.generate(idx, 8, temperature=0)
    top1 = model.generate(
        idx, 8, temperature=1.0, top_k=1, generator=torch.Generator().manual_seed(9)
    )
    assert torch.equal(greedy, top1)
    with torch.no_grad():  # greedy with the cache = argmax of full recomputation at each step
        seq = idx
        for _ in range(8):
            seq = torch.cat([seq, model(seq)[:, -1:].argmax(-1)], dim=1)
    assert torch.equal(greedy, seq)


# ------------------------------------------------------------------ validation

REJECTIONS = [
    (dict(position="learned", window="local_global_nope"), "model.window=local_global_nope"),
    (dict(position="sinusoidal", window="local_global_nope"), "model/position=rope or alibi"),
    (dict(window="local_global", global_every=1), "model.global_every >= 2"),
    (dict(position="rope", rope_fraction=0.1), "model.rope_fraction=0.1"),
    (dict(position="sinusoidal", d_model=33, n_heads=3), "must be even"),
    (dict(d_ff=64, mlp_ratio=2.0), "model.d_ff=64 and model.mlp_ratio=2.0"),
    (dict(norm="rmsnorm", norm_bias=True), "model.norm=rmsnorm has no bias"),
    (dict(attn_softcap=0.0), "model.attn_softcap=0.0 must be > 0"),
    (dict(resid_dropout=1.0), "model.resid_dropout=1.0 must be in [0, 1)"),
    (dict(window="diagonal"), "model.window='diagonal' is not an option"),
    (dict(block="tree"), "model.block='tree' is not an option"),
    (dict(qk_norm_scope="token"), "model.qk_norm_scope='token'"),
    (dict(attention="mha", n_kv_heads=2), "use model/attention=gqa"),
]


@pytest.mark.parametrize("kw,match", REJECTIONS, ids=[m for _, m in REJECTIONS])
def test_invalid_combinations_fail_with_one_line(kw, match):
    with pytest.raises(ConfigError) as e:
        validate_model(ModelConfig(**{**TINY, **kw}))
    assert match in str(e.value) and "\n" not in str(e.value)


# ------------------------------------------------------------------ FLOPs and counts


def test_window_spans_and_flops():
    T = 50
    for w in (1, 5, 49, 50, 80):
        brute = sum(min(t + 1, w) for t in range(T)) / T
        assert _mean_span(T, w) == pytest.approx(brute)
    base = ModelConfig(**TINY)
    full = forward_flops_per_token(base, 64)
    sliding = forward_flops_per_token(dataclasses.replace(base, window="sliding"), 64)
    mixed = forward_flops_per_token(dataclasses.replace(base, window="local_global"), 64)
    assert sliding < mixed < full
    # the parallel block and an untied head do the same matmuls
    assert (
        forward_flops_per_token(
            dataclasses.replace(base, block="parallel", tie_embeddings=False), 64
        )
        == full
    )


# ------------------------------------------------------------------ presets (Hydra)

CONF = os.path.join(os.path.dirname(__file__), "..", "conf")
ARCHS = sorted(f[:-5] for f in os.listdir(os.path.join(CONF, "model", "arch")))


def _compose(overrides):
    from archlab.compose import compose

    return compose(overrides, check=False)


def test_gpt2_preset_counts_124m_parameters():
    cfg = _compose(["model/arch=gpt2"]).model
    assert (cfg.n_layers, cfg.d_model, cfg.vocab_size, cfg.block_size) == (12, 768, 50257, 1024)
    assert param_count(cfg) == 124_439_808
    assert Transformer(cfg).num_params() == 124_439_808
    sizes = {"gpt2-medium": 354_823_168, "gpt2-large": 774_030_080, "gpt2-xl": 1_557_611_200}
    for size, n in sizes.items():  # closed form only: no allocation
        assert param_count(_compose(["model/arch=gpt2", f"model/size={size}"]).model) == n


def test_presets_compose_with_tiny_and_cli_overrides_win():
    for arch in ARCHS:
        cfg = _compose([f"model/arch={arch}", "model/size=tiny"])
        validate_model(cfg.model)
        assert cfg.model.arch == arch and cfg.model.n_layers == 2 and cfg.model.d_model == 64
        model = Transformer(dataclasses.replace(cfg.model, vocab_size=64))
        assert model(torch.randint(0, 64, (1, 8))).shape == (1, 8, 64)
    cfg = _compose(
        [
            "model/arch=gemma2",
            "model/norm_placement=pre",
            "model.attn_softcap=null",
            "model.n_layers=3",
        ]
    ).model
    assert (cfg.norm_placement, cfg.attn_softcap, cfg.n_layers, cfg.logit_softcap) == (
        "pre",
        None,
        3,
        30.0,
    )
    assert _compose([]).model == ModelConfig()  # the default run is unchanged
    gpt2 = _compose(["model/arch=gpt2", "model/norm=rmsnorm"]).model
    assert (gpt2.norm, gpt2.mlp, gpt2.position) == ("rmsnorm", "gelu_tanh", "learned")
