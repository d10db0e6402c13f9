"""Model behaviour: every knob option builds and trains, shapes, exact parameter counts, init."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from archlab.config import ModelConfig
from archlab.model import Transformer
from archlab.model.attention import ATTENTIONS
from archlab.model.flops import d_ff
from archlab.model.mlp import MLPS
from archlab.model.norm import NORMS, QK_NORMS
from archlab.model.placement import PLACEMENTS
from archlab.model.position import POSITIONS
from helpers import tiny_model

TINY = dict(n_heads=4, block_size=16)  # this file's shape of the shared tiny model


def tiny(**kw) -> ModelConfig:
    return tiny_model(**{**TINY, **kw})


def knob_options():
    for knob, registry in [
        ("norm", NORMS),
        ("norm_placement", PLACEMENTS),
        ("mlp", MLPS),
        ("position", POSITIONS),
        ("qk_norm", QK_NORMS),
    ]:
        for option in registry:
            yield {knob: option}
    for option in ATTENTIONS:
        yield {"attention": option, "n_kv_heads": {"mha": None, "gqa": 2, "mqa": 1}[option]}


@pytest.mark.parametrize("kw", list(knob_options()), ids=lambda kw: "-".join(map(str, kw.values())))
def test_every_option_trains_a_few_steps(kw):
    torch.manual_seed(0)
    model = Transformer(tiny(**kw))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    x = torch.randint(0, 64, (4, 16))
    y = torch.roll(x, -1, dims=1)  # a learnable pattern
    losses = []
    for _ in range(8):
        logits = model(x)
        assert logits.shape == (4, 16, 64)
        loss = torch.nn.functional.cross_entropy(logits.view(-1, 64), y.view(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0] - 0.05, losses


def expected_params(c: ModelConfig) -> int:
    """Closed-form count for the spine's options (no biases, tied head)."""
    hd, kv = c.d_model // c.n_heads, c.n_kv_heads or c.n_heads
    attn = c.d_model * hd * (2 * c.n_heads + 2 * kv)
    mlp = c.d_model * d_ff(c) * (3 if MLPS[c.mlp].gated else 2)
    norm = c.d_model  # bias=False: LayerNorm and RMSNorm both have only a gain
    qk = 2 * hd if c.qk_norm != "none" else 0
    per_layer = attn + mlp + 2 * norm + qk
    final = c.d_model if PLACEMENTS[c.norm_placement].final_norm else 0
    pos = c.block_size * c.d_model if c.position == "learned" else 0
    head = 0 if c.tie_embeddings else c.vocab_size * c.d_model
    return c.n_layers * per_layer + final + c.vocab_size * c.d_model + pos + head


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"mlp": "gelu", "position": "learned", "norm": "layernorm"},
        {"attention": "gqa", "n_kv_heads": 2, "qk_norm": "rmsnorm"},
        {"attention": "mqa", "n_kv_heads": 1, "tie_embeddings": False, "norm_placement": "post"},
    ],
)
def test_num_params_is_exact(kw):
    c = tiny(**kw)
    model = Transformer(c)
    assert model.num_params() == expected_params(c)
    distinct = {id(p): p.numel() for p in model.parameters()}
    assert model.num_params() == sum(distinct.values())


def test_bias_adds_biases_and_layernorm_bias():
    no_bias = Transformer(tiny(norm="layernorm"))
    with_bias = Transformer(tiny(norm="layernorm", bias=True))
    c = tiny()
    d = c.d_model
    attn = 3 * d + d  # q, k, v outputs (MHA: n_heads·head_dim = d each) + output projection
    mlp = 2 * d_ff(c) + d  # fc and gate outputs + output projection
    norms = 2 * d  # the two LayerNorms of the block
    extra = c.n_layers * (attn + mlp + norms) + d  # + the final LayerNorm
    assert with_bias.num_params() - no_bias.num_params() == extra


def test_param_matched_mlp_widths():
    c = tiny(d_model=96, multiple_of=32)
    assert d_ff(dataclasses.replace(c, mlp="gelu")) == 4 * 96
    gated = d_ff(c)  # 8/3·96 = 256, already a multiple of 32
    assert gated == 256 and gated % 32 == 0
    gelu_params = 2 * 96 * 4 * 96
    swiglu_params = 3 * 96 * gated
    assert abs(swiglu_params - gelu_params) / gelu_params < 0.05
    assert d_ff(dataclasses.replace(c, d_ff=100)) == 100


def test_causal_future_tokens_do_not_change_past_logits():
    for position in POSITIONS:
        model = Transformer(tiny(position=position)).eval()
        x = torch.randint(0, 64, (1, 16))
        x2 = x.clone()
        x2[0, 10:] = (x2[0, 10:] + 1) % 64
        with torch.no_grad():
            torch.testing.assert_close(model(x)[0, :10], model(x2)[0, :10])


def test_init_scales_residual_projections():
    torch.manual_seed(0)
    c = tiny(n_layers=8, d_model=256, n_heads=4)
    model = Transformer(c)
    block = model.blocks[0]
    assert block.attn.f.q.weight.std().item() == pytest.approx(0.02, rel=0.05)
    expected = 0.02 / math.sqrt(2 * 8)
    assert block.attn.f.proj.weight.std().item() == pytest.approx(expected, rel=0.05)
    assert block.mlp.f.proj.weight.std().item() == pytest.approx(expected, rel=0.05)
    assert model.head.weight is model.embed.weight
    untied = Transformer(dataclasses.replace(c, tie_embeddings=False))
    assert untied.head.weight is not untied.embed.weight


@pytest.mark.parametrize(
    "kw",
    [
        {"mlp": "swiglu"},
        {"mlp": "gelu", "attention": "mqa", "n_kv_heads": 1},
        {"mlp": "swiglu", "attention": "mqa", "n_kv_heads": 1},
        {"mlp": "gelu"},
    ],
)
def test_iso_params_matches_the_reference_count(kw):
    from archlab.model.flops import iso_params_reference, param_count

    c = tiny(d_model=64, n_heads=4, iso_params=True, **kw)
    target = param_count(iso_params_reference(c))
    got = Transformer(c).num_params()
    assert abs(got - target) <= 3 * c.d_model // 2 * c.n_layers  # within half a hidden unit
    plain = Transformer(dataclasses.replace(c, iso_params=False)).num_params()
    if kw != {"mlp": "gelu"}:  # the variants differ from the reference without iso_params
        assert abs(plain - target) > abs(got - target)


def test_iso_params_rejects_an_explicit_width():
    from archlab.config import ConfigError

    with pytest.raises(ConfigError, match="iso_params"):
        tiny(iso_params=True, d_ff=100)
