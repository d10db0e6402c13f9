"""Issue #19: FlexAttention (the GPU path for windows, ALiBi, soft-caps) equals the reference.

On CPU flex_attention runs eagerly (unfused), which checks the block mask and the score
modification against the reference math; the compiled CUDA kernel, and flex's backward, are
only exercised on a GPU.
"""

from __future__ import annotations

import pytest
import torch

from archlab.config import ModelConfig
from archlab.model import Transformer, flex
from archlab.validate import validate_model

pytestmark = [
    pytest.mark.skipif(not flex.available(), reason="torch without flex_attention"),
    pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile"),
]

CASES = {  # each case mixes the variants flex replaces (they share one score_mod / block mask)
    "window_alibi_softcap": {
        "window": "sliding",
        "sliding_window": 6,
        "position": "alibi",
        "attn_softcap": 3.0,
    },
    "local_global_softcap": {
        "window": "local_global",
        "sliding_window": 4,
        "global_every": 2,
        "attn_softcap": 2.0,
    },
    "gqa_alibi": {"attention": "gqa", "n_kv_heads": 2, "position": "alibi", "n_heads": 6},
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_flex_forward_equals_the_reference_path(case, monkeypatch):
    kw = {"n_layers": 2, "d_model": 48, "n_heads": 4, "block_size": 24, "vocab_size": 64}
    cfg = ModelConfig(**{**kw, **CASES[case]})
    validate_model(cfg)
    torch.manual_seed(0)
    model = Transformer(cfg).eval()
    x = torch.randint(0, 64, (3, 24))
    with torch.no_grad():
        ref = model(x)
        calls = []

        def on_cpu(q, window, position, cap, dropout, full_sequence):
            use = dropout == 0.0 and full_sequence
            calls.append(use)
            return use

        monkeypatch.setattr(flex, "wanted", on_cpu)  # force the GPU branch on CPU (eager flex)
        got = model(x)
    assert calls and all(calls)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


def test_flex_is_used_only_where_it_applies():
    from archlab.model.position import NOPE, ALiBi

    alibi = ALiBi(ModelConfig(n_heads=4))
    cuda_like = torch.empty(0)  # a CPU tensor: never flex
    assert not flex.wanted(cuda_like, 8, NOPE, None, 0.0, True)
    if torch.cuda.is_available():
        q = torch.empty(1, device="cuda")
        assert flex.wanted(q, 8, NOPE, None, 0.0, True) and flex.wanted(
            q, None, alibi, None, 0.0, True
        )
        assert not flex.wanted(q, None, NOPE, None, 0.0, True)  # plain causal: SDPA's kernels
        assert not flex.wanted(q, 8, NOPE, None, 0.1, True)  # attention dropout
        assert not flex.wanted(q, 8, NOPE, None, 0.0, False)  # KV-cache decoding


def test_flex_reads_shared_kv_heads_in_place():
    """GQA keys/values with fewer heads than the queries (no repeat) equal the expanded math."""
    from archlab.model.attention import score_bias
    from archlab.model.position import NOPE

    torch.manual_seed(0)
    q, k, v = torch.randn(2, 6, 12, 8), torch.randn(2, 2, 12, 8), torch.randn(2, 2, 12, 8)
    got = flex.attend(q, k, v, 5, NOPE, 0.3, 2.0, compile=False)
    ke, ve, pos = k.repeat_interleave(3, 1), v.repeat_interleave(3, 1), torch.arange(12)
    scores = 2.0 * torch.tanh((q @ ke.transpose(-2, -1)) * 0.3 / 2.0)
    ref = torch.softmax(scores + score_bias(pos, pos, 5, NOPE), -1) @ ve
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)
