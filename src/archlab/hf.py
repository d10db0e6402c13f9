"""Convert between ``transformers`` causal LMs and archlab models of the matching preset.

    from archlab.hf import from_hf, to_hf
    model = from_hf("path/to/hf_dir")     # or an instantiated PreTrainedModel
    hf_model = to_hf(model)               # back to transformers, where the arch exists there

Each supported ``model_type`` has a converter: its config → a ModelConfig (the preset's knobs
plus the checkpoint's sizes), and a table of (archlab name, HF name, layout) for every weight.
Layouts: ``T`` transposes GPT-2's Conv1D weights; ``rope`` permutes each head's rotary dims
from the interleaved layout (GPT-J, Cohere: pairs 2i, 2i+1) to archlab's half-split one
(pairs i, i + r/2), a fixed permutation of q/k rows that leaves q·k unchanged; ``qkv0..2``
split GPT-2's fused c_attn. Tests: tests/test_hf.py (logit parity at fp32).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import torch

from archlab import config
from archlab.config import (
    ConfigError,
    ModelConfig,
    head_dim,
    n_kv_heads,
    rotary_dim,
)
from archlab.model import Transformer
from archlab.model.flops import d_ff
from archlab.model.window import layer_window
from archlab.validate import validate_model

GATED_ACTS = {"silu": "swiglu", "gelu_pytorch_tanh": "geglu_tanh", "gelu": "geglu", "relu": "reglu"}
PLAIN_ACTS = {
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "gelu": "gelu",
    "relu": "relu",
}


# ------------------------------------------------------------------- config: HF → archlab


def _rope_theta(c) -> float:
    rp = getattr(c, "rope_parameters", None) or {}
    if rp.get("rope_type", "default") != "default":
        raise ConfigError(
            f"rope_type={rp['rope_type']!r} (RoPE scaling) is not supported by archlab"
        )
    return float(rp.get("rope_theta", getattr(c, "rope_theta", 10000.0)))


def _attention(c) -> dict:
    kv = getattr(c, "num_key_value_heads", None) or c.num_attention_heads
    kind = "mha" if kv == c.num_attention_heads else "mqa" if kv == 1 else "gqa"
    return {"attention": kind, "n_kv_heads": None if kind == "mha" else kv}


def _window(c) -> dict:
    """model.window from HF's per-layer ``layer_types`` (or a plain ``sliding_window``)."""
    n = c.num_hidden_layers
    types = getattr(c, "layer_types", None)
    if types is None:
        types = [
            "sliding_attention" if getattr(c, "sliding_window", None) else "full_attention"
        ] * n
    local = [t == "sliding_attention" for t in types]
    if not any(local):
        return {"window": "full"}
    if all(local):
        return {"window": "sliding", "sliding_window": c.sliding_window}
    every = local.index(False) + 1
    if local != [(i + 1) % every != 0 for i in range(n)]:
        raise ConfigError(f"layer_types {types} is not a local:global pattern archlab can express")
    return {"window": "local_global", "sliding_window": c.sliding_window, "global_every": every}


def _llama_like(c, **kw) -> dict:
    hd = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    gated = GATED_ACTS[getattr(c, "hidden_act", None) or c.hidden_activation]
    return (
        dict(
            norm="rmsnorm",
            mlp=gated,
            position="rope",
            vocab_size=c.vocab_size,
            n_layers=c.num_hidden_layers,
            d_model=c.hidden_size,
            n_heads=c.num_attention_heads,
            head_dim=None if hd * c.num_attention_heads == c.hidden_size else hd,
            d_ff=c.intermediate_size,
            block_size=c.max_position_embeddings,
            norm_eps=getattr(c, "rms_norm_eps", None) or getattr(c, "layer_norm_eps", 1e-5),
            rope_theta=_rope_theta(c),
            bias=False,
            attn_bias=bool(getattr(c, "attention_bias", False)),
            mlp_bias=bool(getattr(c, "mlp_bias", False)),
            tie_embeddings=bool(c.tie_word_embeddings),
            attn_dropout=float(getattr(c, "attention_dropout", 0.0)),
            **_attention(c),
            **_window(c),
        )
        | kw
    )


def _cfg_llama(c):
    return _llama_like(c, arch="llama")


def _cfg_mistral(c):
    return _llama_like(c, arch="mistral")


def _cfg_qwen3(c):
    return _llama_like(c, arch="qwen3", qk_norm="rmsnorm")


def _cfg_olmo2(c):
    return _llama_like(
        c, arch="olmo2", norm_placement="reordered", qk_norm="rmsnorm", qk_norm_scope="full"
    )


def _cfg_gemma2(c):
    hd = c.head_dim
    return _llama_like(
        c,
        arch="gemma2",
        norm_placement="double",
        norm_weight_offset=1.0,
        scale_embeddings=True,
        attn_scale=c.query_pre_attn_scalar**-0.5,
        attn_softcap=c.attn_logit_softcapping,
        logit_softcap=c.final_logit_softcapping,
    ) | {"head_dim": None if hd * c.num_attention_heads == c.hidden_size else hd}


def _cfg_cohere2(c):
    kw = _llama_like(
        c,
        arch="cohere2",
        norm="layernorm",
        norm_bias=False,
        block="parallel",
        logit_scale=float(c.logit_scale),
    )
    if kw["window"] == "local_global":  # Cohere 2's full layers attend without RoPE
        kw["window"] = "local_global_nope"
    return kw


def _cfg_gpt2(c):
    return dict(
        arch="gpt2",
        norm="layernorm",
        mlp=PLAIN_ACTS[c.activation_function],
        position="learned",
        vocab_size=c.vocab_size,
        n_layers=c.n_layer,
        d_model=c.n_embd,
        n_heads=c.n_head,
        d_ff=c.n_inner or 4 * c.n_embd,
        block_size=c.n_positions,
        norm_eps=c.layer_norm_epsilon,
        bias=True,
        tie_embeddings=bool(c.tie_word_embeddings),
        embed_dropout=c.embd_pdrop,
        attn_dropout=c.attn_pdrop,
        resid_dropout=c.resid_pdrop,
    )


def _cfg_gptj(c):
    hd = c.n_embd // c.n_head
    return dict(
        arch="gptj",
        norm="layernorm",
        block="parallel",
        mlp=PLAIN_ACTS[c.activation_function],
        position="rope",
        rope_fraction=(c.rotary_dim or hd) / hd,
        vocab_size=c.vocab_size,
        n_layers=c.n_layer,
        d_model=c.n_embd,
        n_heads=c.n_head,
        d_ff=c.n_inner or 4 * c.n_embd,
        block_size=c.n_positions,
        norm_eps=c.layer_norm_epsilon,
        bias=True,
        attn_bias=False,
        head_bias=True,
        tie_embeddings=False,
        embed_dropout=c.embd_pdrop,
        attn_dropout=c.attn_pdrop,
        resid_dropout=c.resid_pdrop,
    )


# ------------------------------------------------------------------- config: archlab → HF


def _hf_llama_like(m: ModelConfig, **kw) -> dict:
    act = {v: k for k, v in GATED_ACTS.items()}[m.mlp]
    out = dict(
        vocab_size=m.vocab_size,
        hidden_size=m.d_model,
        intermediate_size=_d_ff(m),
        num_hidden_layers=m.n_layers,
        num_attention_heads=m.n_heads,
        num_key_value_heads=n_kv_heads(m),
        head_dim=head_dim(m),
        hidden_act=act,
        max_position_embeddings=m.block_size,
        rms_norm_eps=m.norm_eps,
        rope_parameters={"rope_type": "default", "rope_theta": m.rope_theta},
        attention_bias=_bias(m, "attn_bias"),
        tie_word_embeddings=m.tie_embeddings,
        attention_dropout=m.attn_dropout,
    )
    return out | kw


def _layer_types(m: ModelConfig) -> list[str]:
    return [
        "sliding_attention" if layer_window(m, i) else "full_attention" for i in range(m.n_layers)
    ]


def _d_ff(m):
    return d_ff(m)


def _bias(m, key):
    return getattr(config, key)(m)


def _hf_llama(m):
    return _hf_llama_like(m, mlp_bias=_bias(m, "mlp_bias"))


def _hf_mistral(m):
    return _hf_llama_like(m, sliding_window=m.sliding_window if m.window == "sliding" else None)


def _hf_qwen3(m):
    sliding = m.window == "sliding"
    return _hf_llama_like(
        m,
        use_sliding_window=sliding,
        sliding_window=m.sliding_window,
        max_window_layers=0,
        layer_types=_layer_types(m),
    )


def _hf_olmo2(m):
    return _hf_llama_like(m)


def _hf_gemma2(m):
    kw = _hf_llama_like(m)
    kw["hidden_activation"] = kw.pop("hidden_act")
    return kw | dict(
        query_pre_attn_scalar=round((m.attn_scale or head_dim(m) ** -0.5) ** -2),
        attn_logit_softcapping=m.attn_softcap,
        final_logit_softcapping=m.logit_softcap,
        sliding_window=m.sliding_window,
        layer_types=_layer_types(m),
    )


def _hf_cohere2(m):
    kw = _hf_llama_like(
        m, logit_scale=m.logit_scale, sliding_window=m.sliding_window, layer_types=_layer_types(m)
    )
    kw["layer_norm_eps"] = kw.pop("rms_norm_eps")
    kw.pop("head_dim")
    return kw


def _hf_gpt2(m):
    act = {"gelu_tanh": "gelu_new", "gelu": "gelu", "relu": "relu"}[m.mlp]
    return dict(
        vocab_size=m.vocab_size,
        n_positions=m.block_size,
        n_embd=m.d_model,
        n_layer=m.n_layers,
        n_head=m.n_heads,
        n_inner=_d_ff(m),
        activation_function=act,
        layer_norm_epsilon=m.norm_eps,
        tie_word_embeddings=m.tie_embeddings,
        resid_pdrop=m.resid_dropout,
        embd_pdrop=m.embed_dropout,
        attn_pdrop=m.attn_dropout,
    )


def _hf_gptj(m):
    return dict(
        vocab_size=m.vocab_size,
        n_positions=m.block_size,
        n_embd=m.d_model,
        n_layer=m.n_layers,
        n_head=m.n_heads,
        n_inner=_d_ff(m),
        rotary_dim=rotary_dim(m),
        activation_function={"gelu_tanh": "gelu_new", "gelu": "gelu"}[m.mlp],
        layer_norm_epsilon=m.norm_eps,
        tie_word_embeddings=False,
        resid_pdrop=m.resid_dropout,
        embd_pdrop=m.embed_dropout,
        attn_pdrop=m.attn_dropout,
    )


# ------------------------------------------------------------------- weight names


def _serial(i, attn_norms, mlp_norms, qk=False, qk_scope="head") -> list[tuple]:
    """Llama-family serial blocks: ``attn_norms`` / ``mlp_norms`` = {archlab slot: HF name}."""
    ours, hf = f"blocks.{i}", f"model.layers.{i}"
    rows = [
        (f"{ours}.attn.{slot}.weight", f"{hf}.{name}.weight", None)
        for slot, name in attn_norms.items()
    ]
    rows += [
        (f"{ours}.mlp.{slot}.weight", f"{hf}.{name}.weight", None)
        for slot, name in mlp_norms.items()
    ]
    rows += [
        (f"{ours}.attn.f.{a}.weight", f"{hf}.self_attn.{b}_proj.weight", None)
        for a, b in (("q", "q"), ("k", "k"), ("v", "v"), ("proj", "o"))
    ]
    rows += [
        (f"{ours}.mlp.f.{a}.weight", f"{hf}.mlp.{b}_proj.weight", None)
        for a, b in (("gate", "gate"), ("fc", "up"), ("proj", "down"))
    ]
    if qk:
        inner = ".norm" if qk_scope == "full" else ""
        rows += [
            (f"{ours}.attn.f.{a}_norm{inner}.weight", f"{hf}.self_attn.{a}_norm.weight", None)
            for a in ("q", "k")
        ]
    return rows


def _biases(rows: list[tuple], keys: tuple[str, ...]) -> list[tuple]:
    return [
        (o.replace(".weight", ".bias"), h.replace(".weight", ".bias"), k)
        for o, h, k in rows
        if any(f".{key}." in o for key in keys)
    ]


def _names_llama_like(m: ModelConfig, attn_norms, mlp_norms, **kw) -> list[tuple]:
    rows = [
        ("embed.weight", "model.embed_tokens.weight", None),
        ("norm.weight", "model.norm.weight", None),
    ]
    for i in range(m.n_layers):
        layer = _serial(i, attn_norms, mlp_norms, **kw)
        rows += layer
        if _bias(m, "attn_bias"):
            rows += [r for r in _biases(layer, ("q", "k", "v", "proj")) if ".attn.f." in r[0]]
        if _bias(m, "mlp_bias"):
            rows += [r for r in _biases(layer, ("gate", "fc", "proj")) if ".mlp.f." in r[0]]
    if not m.tie_embeddings:
        rows.append(("head.weight", "lm_head.weight", None))
    return rows


def _names_llama(m):
    return _names_llama_like(
        m, {"norm_in": "input_layernorm"}, {"norm_in": "post_attention_layernorm"}
    )


def _names_qwen3(m):
    return _names_llama_like(
        m, {"norm_in": "input_layernorm"}, {"norm_in": "post_attention_layernorm"}, qk=True
    )


def _names_olmo2(m):
    return _names_llama_like(
        m,
        {"norm_out": "post_attention_layernorm"},
        {"norm_out": "post_feedforward_layernorm"},
        qk=True,
        qk_scope="full",
    )


def _names_gemma2(m):
    return _names_llama_like(
        m,
        {"norm_in": "input_layernorm", "norm_out": "post_attention_layernorm"},
        {"norm_in": "pre_feedforward_layernorm", "norm_out": "post_feedforward_layernorm"},
    )


def _names_cohere2(m):
    rows = [
        ("embed.weight", "model.embed_tokens.weight", None),
        ("norm.weight", "model.norm.weight", None),
    ]
    for i in range(m.n_layers):
        ours, hf = f"blocks.{i}", f"model.layers.{i}"
        rows.append((f"{ours}.norm_in.weight", f"{hf}.input_layernorm.weight", None))
        rows += [
            (f"{ours}.attn.{a}.weight", f"{hf}.self_attn.{b}_proj.weight", lay)
            for a, b, lay in (
                ("q", "q", "rope"),
                ("k", "k", "rope"),
                ("v", "v", None),
                ("proj", "o", None),
            )
        ]
        rows += [
            (f"{ours}.mlp.{a}.weight", f"{hf}.mlp.{b}_proj.weight", None)
            for a, b in (("gate", "gate"), ("fc", "up"), ("proj", "down"))
        ]
    if not m.tie_embeddings:
        rows.append(("head.weight", "lm_head.weight", None))
    return rows


def _names_gpt2(m):
    rows = [
        ("embed.weight", "transformer.wte.weight", None),
        ("position.wpe.weight", "transformer.wpe.weight", None),
    ]
    for p in ("weight", "bias"):
        rows.append((f"norm.{p}", f"transformer.ln_f.{p}", None))
        for i in range(m.n_layers):
            ours, hf = f"blocks.{i}", f"transformer.h.{i}"
            t = "T" if p == "weight" else None
            rows += [
                (f"{ours}.attn.norm_in.{p}", f"{hf}.ln_1.{p}", None),
                (f"{ours}.mlp.norm_in.{p}", f"{hf}.ln_2.{p}", None),
                (f"{ours}.attn.f.proj.{p}", f"{hf}.attn.c_proj.{p}", t),
                (f"{ours}.mlp.f.fc.{p}", f"{hf}.mlp.c_fc.{p}", t),
                (f"{ours}.mlp.f.proj.{p}", f"{hf}.mlp.c_proj.{p}", t),
            ]
            rows += [
                (f"{ours}.attn.f.{a}.{p}", f"{hf}.attn.c_attn.{p}", f"qkv{j}")
                for j, a in enumerate("qkv")
            ]
    if not m.tie_embeddings:
        rows.append(("head.weight", "lm_head.weight", None))
    return rows


def _names_gptj(m):
    rows = [
        ("embed.weight", "transformer.wte.weight", None),
        ("head.weight", "lm_head.weight", None),
        ("head.bias", "lm_head.bias", None),
    ]
    for p in ("weight", "bias"):
        rows.append((f"norm.{p}", f"transformer.ln_f.{p}", None))
        for i in range(m.n_layers):
            ours, hf = f"blocks.{i}", f"transformer.h.{i}"
            rows += [
                (f"{ours}.norm_in.{p}", f"{hf}.ln_1.{p}", None),
                (f"{ours}.mlp.fc.{p}", f"{hf}.mlp.fc_in.{p}", None),
                (f"{ours}.mlp.proj.{p}", f"{hf}.mlp.fc_out.{p}", None),
            ]
    for i in range(m.n_layers):
        ours, hf = f"blocks.{i}", f"transformer.h.{i}"
        rows += [
            (f"{ours}.attn.{a}.weight", f"{hf}.attn.{b}_proj.weight", lay)
            for a, b, lay in (
                ("q", "q", "rope"),
                ("k", "k", "rope"),
                ("v", "v", None),
                ("proj", "out", None),
            )
        ]
    return rows


@dataclasses.dataclass(frozen=True)
class Converter:
    config: Callable  # HF config → ModelConfig kwargs
    hf_config: Callable  # ModelConfig → HF config kwargs
    names: Callable  # ModelConfig → [(archlab name, HF name, layout)]
    hf_class: str  # transformers class name


CONVERTERS: dict[str, Converter] = {
    "gpt2": Converter(_cfg_gpt2, _hf_gpt2, _names_gpt2, "GPT2LMHeadModel"),
    "gptj": Converter(_cfg_gptj, _hf_gptj, _names_gptj, "GPTJForCausalLM"),
    "llama": Converter(_cfg_llama, _hf_llama, _names_llama, "LlamaForCausalLM"),
    "mistral": Converter(_cfg_mistral, _hf_mistral, _names_llama, "MistralForCausalLM"),
    "qwen3": Converter(_cfg_qwen3, _hf_qwen3, _names_qwen3, "Qwen3ForCausalLM"),
    "olmo2": Converter(_cfg_olmo2, _hf_olmo2, _names_olmo2, "Olmo2ForCausalLM"),
    "gemma2": Converter(_cfg_gemma2, _hf_gemma2, _names_gemma2, "Gemma2ForCausalLM"),
    "cohere2": Converter(_cfg_cohere2, _hf_cohere2, _names_cohere2, "Cohere2ForCausalLM"),
}


# ------------------------------------------------------------------- layouts


def _rope_perm(m: ModelConfig, rows: int) -> torch.Tensor:
    """Row order taking an interleaved-RoPE projection to archlab's half-split layout."""
    hd, rot = head_dim(m), rotary_dim(m)
    per_head = torch.cat([torch.arange(0, rot, 2), torch.arange(1, rot, 2), torch.arange(rot, hd)])
    heads = rows // hd
    return (torch.arange(heads)[:, None] * hd + per_head[None]).reshape(-1)


def _to_ours(m, t: torch.Tensor, layout) -> torch.Tensor:
    if layout is None:
        return t
    if layout == "T":
        return t.t()
    if layout == "rope":
        return t[_rope_perm(m, t.shape[0])]
    j = int(layout[-1])  # qkv0..2: GPT-2's fused (d, 3d) Conv1D weight or (3d,) bias
    return (t.t() if t.ndim == 2 else t).chunk(3, dim=0)[j]


def _to_hf(m, parts: list[tuple[torch.Tensor, str | None]]) -> torch.Tensor:
    if len(parts) == 3:  # the fused qkv
        t = torch.cat([p for p, _ in parts], dim=0)
        return t.t() if t.ndim == 2 else t
    t, layout = parts[0]
    if layout == "T":
        return t.t()
    if layout == "rope":
        return t[torch.argsort(_rope_perm(m, t.shape[0]))]
    return t


# ------------------------------------------------------------------- public API


def _load(model_or_path):
    if isinstance(model_or_path, (str, Path)):
        from transformers import AutoModelForCausalLM  # the hf extra: only when loading

        if not Path(model_or_path).is_dir():
            raise FileNotFoundError(
                f"{model_or_path} is not a local Hugging Face checkpoint directory"
            )
        return AutoModelForCausalLM.from_pretrained(str(model_or_path), dtype=torch.float32)
    return model_or_path


def config_from_hf(hf_config) -> ModelConfig:
    kind = hf_config.model_type
    if kind not in CONVERTERS:
        raise ConfigError(
            f"transformers model_type {kind!r} has no archlab converter; supported: "
            f"{', '.join(CONVERTERS)}"
        )
    cfg = ModelConfig(**CONVERTERS[kind].config(hf_config))
    validate_model(cfg)
    return cfg


def from_hf(model_or_path) -> Transformer:
    """A transformers causal LM (instance or local checkpoint dir) → archlab Transformer (fp32)."""
    hf = _load(model_or_path)
    cfg = config_from_hf(hf.config)
    theirs = hf.state_dict()
    ours = {
        name: _to_ours(cfg, theirs[h].float(), layout)
        for name, h, layout in CONVERTERS[hf.config.model_type].names(cfg)
    }
    model = Transformer(cfg)
    missing, unexpected = model.load_state_dict(ours, strict=False)
    missing = [k for k in missing if not (cfg.tie_embeddings and k == "head.weight")]
    if missing or unexpected:
        raise RuntimeError(
            f"from_hf: weights not mapped: missing {missing}, unexpected {unexpected}"
        )
    return model.eval()


def to_hf(model: Transformer):
    """An archlab Transformer built from a supported preset → the transformers model."""
    import transformers  # the hf extra: only when converting

    m = model.cfg
    if m.arch not in CONVERTERS:
        raise ConfigError(
            f"to_hf needs model.arch in {', '.join(CONVERTERS)} (got {m.arch!r}): transformers "
            "has no class for other presets or hand-mixed knobs"
        )
    conv = CONVERTERS[m.arch]
    cls = getattr(transformers, conv.hf_class)
    hf_cfg = cls.config_class(**conv.hf_config(m))
    hf = cls(hf_cfg).eval()
    ours = model.state_dict()
    grouped: dict[str, list] = {}
    for name, h, layout in conv.names(m):
        grouped.setdefault(h, []).append((ours[name], layout))
    theirs = {h: _to_hf(m, parts) for h, parts in grouped.items()}
    missing, unexpected = hf.load_state_dict(theirs, strict=False)
    missing = [k for k in missing if k != "lm_head.weight" or not m.tie_embeddings]
    if missing or unexpected:
        raise RuntimeError(f"to_hf: weights not mapped: missing {missing}, unexpected {unexpected}")
    return hf
