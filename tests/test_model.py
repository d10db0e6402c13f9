"""Model behaviour: every knob option builds and trains, shapes, exact parameter counts, init."""

from __future__ import annotations

import dataclasses
import itertools
import math

import pytest
import torch

from archlab.config import ModelConfig
from archlab.model import Transformer
from archlab.model.attention import ATTENTIONS, Attention
from archlab.model.block import BLOCKS, block_params
from archlab.model.flops import d_ff, param_count
from archlab.model.mlp import MLP, MLPS
from archlab.model.norm import NORMS, QK_NORMS
from archlab.model.placement import PLACEMENTS
from archlab.model.position import POSITIONS, make_position
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


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


COUNT_CASES = [
    *knob_options(),
    {"block": "parallel", "norm_placement": "double", "bias": True, "norm": "layernorm"},
    {"qk_norm": "layernorm", "qk_norm_scope": "full", "attention": "gqa", "n_kv_heads": 2},
    {"mlp": "geglu", "mlp_bias": True, "attn_bias": True, "head_bias": True},
]


@pytest.mark.parametrize("kw", COUNT_CASES, ids=lambda kw: "-".join(map(str, kw.values())))
def test_each_component_counts_its_own_parameters(kw):
    """Every component's closed-form count equals its built module's, and the model's count
    (``param_count``) is the sum the model really has (a tied head counts once)."""
    c = tiny(**kw)
    ff = d_ff(c)
    assert Attention.n_params(c) == _count(Attention(c))
    assert MLP.n_params(c, ff) == _count(MLP(c, ff))
    assert block_params(c, ff) == _count(BLOCKS[c.block](c, 0, ff))
    assert POSITIONS[c.position].n_params(c) == _count(make_position(c))
    for cls, bias in itertools.product(NORMS.values(), (False, True)):
        assert cls.n_params(24, bias) == _count(cls(24, bias=bias))
    model = Transformer(c)
    assert model.num_params() == param_count(c)
    assert model.num_params() == sum({id(p): p.numel() for p in model.parameters()}.values())


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
    assert block.attn.qkv.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert block.mlp.fc.weight.std().item() == pytest.approx(0.02, rel=0.05)
    expected = 0.02 / math.sqrt(2 * 8)
    assert block.attn.proj.weight.std().item() == pytest.approx(expected, rel=0.05)
    assert block.mlp.proj.weight.std().item() == pytest.approx(expected, rel=0.05)
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
    from archlab.model.flops import iso_params_reference

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


def rotate_half_reference(x, pos, inv_freq, rot: int):
    """The textbook RoPE: x·cos + rotate_half(x)·sin on the first ``rot`` dims, in x's dtype."""
    angles = pos.float()[:, None] * inv_freq
    cos, sin = [f(torch.cat([angles, angles], -1))[:, None] for f in (torch.cos, torch.sin)]
    x1, x2 = x[..., : rot // 2], x[..., rot // 2 : rot]
    rotated = (x[..., :rot] * cos + torch.cat([-x2, x1], -1) * sin).to(x.dtype)
    return torch.cat([rotated, x[..., rot:]], -1)


@pytest.mark.parametrize("fraction", [1.0, 0.5])
def test_rope_is_the_rotate_half_formula_bitwise(fraction):
    """RoPE keeps rotate_half's sign in its sin table and looks both tables up at once: the
    result is the textbook formula bit for bit (full and partial rotation, fp32 and bf16 q/k,
    and past block_size, where the tables grow)."""
    cfg = tiny(rope_fraction=fraction)
    rope = make_position(cfg)
    hd = cfg.d_model // cfg.n_heads
    rot = round(hd * fraction)
    x = torch.randn(2, 5, 3, hd)
    for start in (0, 3 * cfg.block_size):  # the second one grows the tables
        pos = torch.arange(start, start + 5)
        rope.extend(start + 5)
        for xx in (x, x.bfloat16()):
            out = rope.rotate(xx, pos)
            assert out.dtype == xx.dtype
            assert torch.equal(out, rotate_half_reference(xx, pos, rope.inv_freq, rot))


def test_rmsnorm_fp32_equals_the_upcast_formula_bitwise():
    """fp32 inputs skip the no-op casts of the upcast path: same values and gradients bit for
    bit as normalising via x.float() … .type_as(x); a constant row normalises to the gain."""
    norm = NORMS["rmsnorm"](16, eps=1e-5)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(16))
    x = torch.randn(3, 5, 16, requires_grad=True)
    xf = x.float()
    ref = (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + 1e-5)).type_as(x) * norm.weight
    out = norm(x)
    assert torch.equal(out, ref)
    g = torch.randn_like(out)
    params = (x, norm.weight)
    for a, b in zip(torch.autograd.grad(out, params, g), torch.autograd.grad(ref, params, g)):
        assert torch.equal(a, b)
    const = torch.full((1, 16), 3.0)
    torch.testing.assert_close(norm(const), norm.weight.detach()[None] * 3 / math.sqrt(9 + 1e-5))
