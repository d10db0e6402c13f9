"""The analytic FLOP counter against torch.utils.flop_counter on real forward+backward passes.

Like with like: ``attention="dense"`` (full T × T scores, what the CPU kernels execute) must
equal the counted matmul FLOPs exactly, for every preset and knob variant. The one explained
difference: the fused CPU attention kernel (plain causal layers: no window, no ALiBi, no
soft-cap) recomputes q·k in its backward pass, one extra q·k product per such layer, which
torch's counter includes. The ``causal`` count (model FLOPs, used for MFU) is never above
the dense one, so MFU ≤ executed FLOP/s ÷ peak.
"""

from __future__ import annotations

import dataclasses
import os

import pytest
import torch

from archlab.config import ModelConfig, head_dim
from archlab.model import Transformer
from archlab.model.flops import (
    _mean_span,
    executed_flops,
    forward_flops_per_token,
    train_flops_per_token,
)
from archlab.model.window import layer_window
from archlab.validate import validate_model

CONF = os.path.join(os.path.dirname(__file__), "..", "conf")
ARCHS = sorted(f[:-5] for f in os.listdir(os.path.join(CONF, "model", "arch")))
B, VOCAB = 2, 128


def _compose(overrides):
    from archlab.compose import compose

    return compose(overrides, check=False).model


def _fused_layers(cfg: ModelConfig) -> int:
    """Layers whose training attention runs the fused SDPA kernel (is_causal, no mask)."""
    if cfg.attn_softcap is not None or cfg.position == "alibi":
        return 0
    return sum(layer_window(cfg, i) is None for i in range(cfg.n_layers))


def _expected_executed(cfg: ModelConfig, T: int) -> float:
    recompute = _fused_layers(cfg) * 2 * cfg.n_heads * head_dim(cfg) * T  # per token
    return B * T * (train_flops_per_token(cfg, T, attention="dense") + recompute)


def _check(cfg: ModelConfig, T: int | None = None) -> None:
    cfg = dataclasses.replace(
        cfg, vocab_size=VOCAB, embed_dropout=0.0, attn_dropout=0.0, resid_dropout=0.0
    )
    validate_model(cfg)
    T = T or cfg.block_size
    torch.manual_seed(0)
    model = Transformer(cfg)
    counted = executed_flops(model, torch.randint(0, VOCAB, (B, T)))
    assert counted == _expected_executed(cfg, T), (cfg.arch, counted, _expected_executed(cfg, T))
    causal = train_flops_per_token(cfg, T)
    dense = train_flops_per_token(cfg, T, attention="dense")
    assert causal <= dense and B * T * causal <= counted


@pytest.mark.parametrize("arch", ARCHS)
def test_every_preset_matches_flop_counter(arch):
    _check(_compose([f"model/arch={arch}", "model/size=tiny"]))


@pytest.mark.parametrize(
    "overrides",
    [
        ["model/attention=gqa", "model.n_kv_heads=2"],
        ["model/attention=mqa", "model.n_kv_heads=1"],
        ["model/window=sliding", "model.sliding_window=16"],
        ["model/window=local_global", "model.sliding_window=8", "model.global_every=2"],
        ["model/window=local_global_nope", "model.n_layers=4", "model.global_every=2"],
        ["model.tie_embeddings=false"],
        ["model/mlp=gelu"],
        ["model/mlp=geglu", "model.d_ff=100"],
        ["model/mlp=relu2", "model.mlp_ratio=3.0"],
        ["model.head_dim=24"],
        ["model.head_dim=8", "model/attention=gqa", "model.n_kv_heads=2"],
        ["model/block=parallel"],
        ["model/position=alibi"],
        ["model/position=learned"],
        ["model.attn_softcap=20.0"],
        ["model/qk_norm=rmsnorm"],
        ["model/norm_placement=post"],
    ],
    ids=lambda o: ",".join(o),
)
def test_knob_variants_match_flop_counter(overrides):
    _check(_compose(["model/size=tiny", *overrides]))


def test_shorter_sequence_than_block_size():
    _check(_compose(["model/size=tiny", "model/window=sliding", "model.sliding_window=16"]), T=24)


def test_causal_span_by_hand():
    assert _mean_span(4, None) == 2.5  # keys 1, 2, 3, 4
    assert _mean_span(4, 2) == (1 + 2 + 2 + 2) / 4
    assert _mean_span(4, 8) == 2.5  # a window longer than the sequence is no window
    cfg = ModelConfig(n_layers=1, d_model=64, n_heads=4, block_size=64, vocab_size=VOCAB)
    dense = forward_flops_per_token(cfg, 64, attention="dense")
    causal = forward_flops_per_token(cfg, 64)
    # the only difference is q·k and p·v over T keys vs the mean span (T+1)/2
    assert dense - causal == 2 * 2 * 4 * 16 * (64 - 32.5)
    with pytest.raises(ValueError):
        forward_flops_per_token(cfg, 64, attention="half")


def test_sliding_window_cheaper_and_untied_head_same_matmul():
    base = ModelConfig(n_layers=2, d_model=64, n_heads=4, block_size=256, vocab_size=VOCAB)
    slid = dataclasses.replace(base, window="sliding", sliding_window=32)
    assert forward_flops_per_token(slid) < forward_flops_per_token(base)
    assert forward_flops_per_token(slid, attention="dense") == forward_flops_per_token(
        base, attention="dense"
    )  # masked kernels still compute every score
    untied = dataclasses.replace(base, tie_embeddings=False)
    assert forward_flops_per_token(untied) == forward_flops_per_token(base)
