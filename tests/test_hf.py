"""HF parity: tiny random transformers models → from_hf → identical fp32 logits; and back."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")

from archlab.hf import from_hf, to_hf  # noqa: E402 (after the importorskip)

V, T = 101, 24
LLAMA = dict(
    vocab_size=V,
    hidden_size=48,
    intermediate_size=80,
    num_hidden_layers=2,
    num_attention_heads=4,
    max_position_embeddings=64,
    rms_norm_eps=1e-6,
    rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
)

# (id, transformers class, config kwargs, atol): every preset transformers implements
CASES = [
    (
        "gpt2",
        "GPT2LMHeadModel",
        dict(vocab_size=V, n_positions=64, n_embd=48, n_layer=2, n_head=4),
        1e-5,
    ),
    (
        "gpt2-untied-inner",
        "GPT2LMHeadModel",
        dict(
            vocab_size=V,
            n_positions=64,
            n_embd=48,
            n_layer=2,
            n_head=4,
            n_inner=72,
            tie_word_embeddings=False,
        ),
        1e-5,
    ),
    (
        "gptj",
        "GPTJForCausalLM",
        dict(vocab_size=V, n_positions=64, n_embd=64, n_layer=2, n_head=4, rotary_dim=4),
        1e-5,
    ),
    ("llama", "LlamaForCausalLM", LLAMA, 1e-5),
    (
        "llama-gqa-bias",
        "LlamaForCausalLM",
        {
            **LLAMA,
            "num_key_value_heads": 2,
            "attention_bias": True,
            "mlp_bias": True,
            "tie_word_embeddings": True,
        },
        1e-5,
    ),
    ("llama-mqa", "LlamaForCausalLM", {**LLAMA, "num_key_value_heads": 1}, 1e-5),
    (
        "mistral-swa",
        "MistralForCausalLM",
        {**LLAMA, "num_key_value_heads": 2, "sliding_window": 7},
        1e-5,
    ),
    ("qwen3", "Qwen3ForCausalLM", {**LLAMA, "num_key_value_heads": 2, "head_dim": 16}, 1e-5),
    (
        "qwen3-swa",
        "Qwen3ForCausalLM",
        {
            **LLAMA,
            "num_key_value_heads": 2,
            "use_sliding_window": True,
            "sliding_window": 6,
            "max_window_layers": 0,
        },
        1e-5,
    ),
    ("olmo2", "Olmo2ForCausalLM", {**LLAMA, "num_key_value_heads": 2}, 1e-5),
    (
        "gemma2",
        "Gemma2ForCausalLM",
        {
            **LLAMA,
            "num_key_value_heads": 2,
            "head_dim": 16,
            "query_pre_attn_scalar": 20,
            "sliding_window": 6,
            "attn_logit_softcapping": 5.0,
            "final_logit_softcapping": 3.0,
            "hidden_activation": "gelu_pytorch_tanh",
        },
        1e-5,
    ),
    (
        "cohere2",
        "Cohere2ForCausalLM",
        {
            **{k: v for k, v in LLAMA.items() if k != "rms_norm_eps"},
            "num_hidden_layers": 4,
            "num_key_value_heads": 2,
            "sliding_window": 6,
            "logit_scale": 0.5,
        },
        1e-5,
    ),
]


def _hf_model(cls_name: str, kw: dict):
    torch.manual_seed(0)
    cls = getattr(transformers, cls_name)
    model = cls(cls.config_class(**kw, attn_implementation="eager")).eval()
    with torch.no_grad():  # random norms and biases too, so every mapping is exercised
        for p in model.parameters():
            p.add_(torch.randn_like(p) * (0.2 if p.ndim == 1 else 0.05))
    return model


@pytest.mark.parametrize("name,cls,kw,atol", CASES, ids=[c[0] for c in CASES])
def test_logits_match_transformers(name, cls, kw, atol):
    hf = _hf_model(cls, kw)
    ours = from_hf(hf)
    assert ours.cfg.arch == hf.config.model_type
    idx = torch.randint(0, V, (2, T), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = hf(idx).logits
        got = ours(idx)
    diff = (got - ref).abs().max().item()
    print(f"{name}: max abs diff {diff:.2e}")
    torch.testing.assert_close(got, ref, atol=atol, rtol=1e-5)
    # and back: to_hf gives a transformers model with the same weights and logits
    back = to_hf(ours)
    with torch.no_grad():
        torch.testing.assert_close(back(idx).logits, ref, atol=atol, rtol=1e-5)
    sd, ref_sd = back.state_dict(), hf.state_dict()
    for k, v in ref_sd.items():
        if k in sd:
            torch.testing.assert_close(sd[k], v, atol=0, rtol=0)


def test_from_hf_local_directory(tmp_path):
    hf = _hf_model("LlamaForCausalLM", LLAMA)
    hf.save_pretrained(tmp_path)
    ours = from_hf(tmp_path)
    idx = torch.randint(0, V, (1, 10))
    with torch.no_grad():
        torch.testing.assert_close(ours(idx), hf(idx).logits, atol=1e-5, rtol=1e-5)


def test_unsupported_model_type_is_one_line_error():
    from archlab.config import ConfigError

    cfg = transformers.BloomConfig(vocab_size=V, hidden_size=32, n_layer=1, n_head=4)
    with pytest.raises(ConfigError, match="no archlab converter"):
        from_hf(transformers.BloomForCausalLM(cfg))


GPT2_DIR = os.environ.get("ARCHLAB_GPT2_DIR", "")


@pytest.mark.skipif(
    not (GPT2_DIR and Path(GPT2_DIR, "config.json").is_file()),
    reason="set ARCHLAB_GPT2_DIR to a local Hugging Face gpt2 checkpoint",
)
def test_real_gpt2_weights_from_local_dir():
    hf = transformers.AutoModelForCausalLM.from_pretrained(GPT2_DIR, dtype=torch.float32).eval()
    ours = from_hf(GPT2_DIR)
    assert ours.num_params() == 124_439_808
    idx = torch.tensor([[15496, 11, 616, 1438, 318]])  # "Hello, my name is"
    with torch.no_grad():
        torch.testing.assert_close(ours(idx), hf(idx).logits, atol=1e-4, rtol=1e-4)
