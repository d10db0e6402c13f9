"""Typed configuration and validation.

Every knob is a plain value (``model.norm: rmsnorm``), so the resolved config is flat and
readable for W&B group-by and ``archlab compare``. The dataclasses below are registered as
Hydra structured-config schemas (``conf/train.yaml`` starts from ``archlab_schema``), so Hydra
rejects unknown keys and ill-typed values at composition time; :func:`validate` then checks the
cross-field rules before anything is built. Every mistake becomes one :class:`ConfigError` line
that names the keys and the fix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


class ConfigError(ValueError):
    """A user mistake in the configuration: printed as one line, no traceback."""


@dataclass
class ModelConfig:
    # knobs (each one is a config group under conf/model/<knob>/; docs/knobs.md lists them)
    arch: str = "none"  # the preset it started from (conf/model/arch/), recorded for group-by
    norm: str = "rmsnorm"  # layernorm | rmsnorm
    norm_placement: str = "pre"  # pre | post | double | reordered | none
    block: str = "serial"  # serial | parallel
    mlp: str = "swiglu"  # relu | relu2 | gelu | gelu_tanh | swiglu | reglu | geglu | geglu_tanh
    position: str = "rope"  # learned | sinusoidal | rope | alibi | nope
    qk_norm: str = "none"  # none | rmsnorm | layernorm
    attention: str = "mha"  # mha | gqa | mqa
    window: str = "full"  # full | sliding | local_global | local_global_nope
    init: str = "gpt2"  # gpt2 | normal | small
    # shape (conf/model/size/)
    n_layers: int = 4
    d_model: int = 128
    n_heads: int = 4
    n_kv_heads: int | None = None  # None: = n_heads (MHA)
    head_dim: int | None = None  # None: d_model // n_heads
    d_ff: int | None = None  # None: param-matched default (4·d, or 8/3·d for gated MLPs)
    mlp_ratio: float | None = None  # d_ff = round(mlp_ratio · d_model) (instead of d_ff)
    # iso-parameter arms: pick d_ff so the model has as many parameters as the reference
    # (same config with MHA and a 4·d GeLU MLP), whatever the MLP / attention variant
    iso_params: bool = False
    multiple_of: int = 32  # gated d_ff is rounded up to a multiple of this
    block_size: int = 128  # context length (max positions)
    vocab_size: int = 256  # set from the tokenizer
    # details
    norm_eps: float = 1e-5
    norm_bias: bool | None = None  # LayerNorm bias; None: follows model.bias
    norm_weight_offset: float = 0.0  # gain = offset + weight (Gemma: 1, weight starts at 0)
    qk_norm_scope: str = "head"  # head: per head over head_dim | full: over all heads (OLMo 2)
    rope_theta: float = 10000.0
    rope_fraction: float = 1.0  # rotate only this fraction of each head's dims (GPT-J: 0.25)
    sliding_window: int = 32  # tokens a local layer sees, itself included (model/window)
    global_every: int = 4  # local_global*: layer i is global when (i + 1) % global_every == 0
    attn_scale: float | None = None  # None: 1/sqrt(head_dim) (Gemma 2: query_pre_attn_scalar^-½)
    attn_softcap: float | None = None  # cap · tanh(scores / cap) (Gemma 2: 50)
    logit_softcap: float | None = None  # same on the output logits (Gemma 2: 30)
    logit_scale: float = 1.0  # logits multiplied by this (Cohere: 0.0625)
    scale_embeddings: bool = False  # embeddings × sqrt(d_model) (Vaswani et al., Gemma)
    bias: bool = False  # biases in every linear layer (and LayerNorm, see norm_bias)
    attn_bias: bool | None = None  # q, k, v, o biases; None: follows model.bias
    mlp_bias: bool | None = None  # MLP biases; None: follows model.bias
    head_bias: bool = False  # a bias on the output head (GPT-J)
    tie_embeddings: bool = True
    init_std: float = 0.02
    embed_dropout: float = 0.0
    attn_dropout: float = 0.0  # on the attention probabilities
    resid_dropout: float = 0.0  # on each sublayer's output, before the residual add


@dataclass
class LossConfig:
    name: str = "ce"  # ce | z_loss
    z_loss_coef: float = 0.0


@dataclass
class DataConfig:
    source: str = "stdlib"  # stdlib | text | hf
    path: str | None = None  # file or glob, for source=text
    # source=hf: a hub dataset (dataset [+ subset]) or local data_files (txt/json/jsonl/parquet/csv)
    dataset: str | None = None  # hub name, e.g. roneneldan/TinyStories
    subset: str | None = None  # hub config name, e.g. wikitext-103-raw-v1
    revision: str | None = None  # hub revision (branch, tag or commit)
    data_files: str | None = None  # local file or glob (instead of a hub dataset)
    val_files: str | None = None  # local validation file or glob (optional)
    split: str = "train"  # training split name
    val_split: str | None = None  # None: "validation" if the source has it, else split train
    text_column: str = "text"
    streaming: bool = False  # iterate the dataset instead of downloading it whole
    max_docs: int | None = None  # cap on documents read per split (None: all)
    preset: str | None = None  # set by conf/data/<preset>.yaml (names it in messages)
    offline_alternative: str | None = None  # what to use instead when the hub is unreachable
    val_fraction: float = 0.02  # stdlib/hf: fraction of documents; text: tail of each file
    # fixed validation windows (same for every arm and seed); 256 keeps the evaluation noise
    # (standard error over windows) well below the seed noise at the default sizes
    val_windows: int = 256
    single_epoch: bool = False  # warn (and record repeats_data) if the run would repeat data
    cache_dir: str = "~/.cache/archlab"


@dataclass
class TokenizerConfig:
    name: str = "byte"  # byte | char | bpe | pretrained (conf/tokenizer/<name>.yaml)
    vocab_size: int | None = None  # bpe: target size (trained); others: set by the tokenizer
    min_frequency: int = 2  # bpe: merges need at least this many occurrences
    path: str | None = None  # pretrained: a local Hugging Face tokenizer directory


@dataclass
class OptimConfig:
    lr: float = 3e-3
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    warmup_steps: int = 30
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 1.0  # 0 disables clipping
    decay_norms_and_biases: bool = False
    decay_embeddings: bool = False


@dataclass
class TrainConfig:
    batch_size: int = 16
    max_steps: int = 300
    log_every: int = 10
    val_every: int = 100
    # divergence: loss NaN/inf, or above factor × initial loss for `patience` steps (0: off)
    divergence_factor: float = 1.5
    divergence_patience: int = 3
    telemetry_every: int = 50  # stability telemetry interval in steps (0: off)
    # final val loss also at these multiples of block_size (length extrapolation), e.g. [2, 4]
    eval_context_multiples: list = field(default_factory=list)
    ckpt_every: int | None = None  # checkpoint every N steps (None: = val_every; 0: never)
    # compute budget instead of max_steps (exactly one): tokens:2e6 | flops:3e13 | seconds:600
    budget: str | None = None


@dataclass
class LoggerConfig:
    kinds: list = field(default_factory=lambda: ["wandb"])  # any of: wandb, csv, tensorboard
    project: str = "archlab"
    entity: str | None = None
    group: str | None = None  # default: the sweep / experiment name
    mode: str = "offline"  # W&B mode: offline | online | disabled
    init_timeout: float = 10.0


@dataclass
class TrainerConfig:
    accelerator: str = "auto"  # auto | cpu | gpu
    devices: Any = 1
    strategy: str = "auto"
    precision: str | None = None  # None: bf16-mixed on GPU, 32-true on CPU
    compile: bool = False
    threads: int | None = None  # CPU threads (None: all cores)
    deterministic: bool | None = None  # None: True on CPU


@dataclass
class ArchlabConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    seed: int = 0
    name: str = "default"  # experiment / sweep name (W&B group)
    out_dir: str = "outputs"
    resume: str | None = None  # null | auto (this run dir's last checkpoint) | <run dir>


def register_schema() -> None:
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="archlab_schema", node=ArchlabConfig)


# ---------------------------------------------------------------- derived values


def head_dim(m: ModelConfig) -> int:
    return m.head_dim if m.head_dim is not None else m.d_model // m.n_heads


def n_kv_heads(m: ModelConfig) -> int:
    return m.n_kv_heads if m.n_kv_heads is not None else m.n_heads


def d_ff(m: ModelConfig) -> int:
    """Hidden width of the MLP: ``model.d_ff``, else ``mlp_ratio·d``, else param-matched."""
    if m.d_ff is not None:
        return m.d_ff
    if m.iso_params:
        from archlab.model.flops import iso_params_d_ff

        return iso_params_d_ff(m)
    if m.mlp_ratio is not None:
        return round(m.mlp_ratio * m.d_model)
    from archlab.model.mlp import MLPS

    if MLPS[m.mlp].gated:  # 3 matrices: 8/3·d keeps 3·d·d_ff ≈ 8·d² (Shazeer 2020)
        width = int(8 * m.d_model / 3)
        return m.multiple_of * math.ceil(width / m.multiple_of)
    return 4 * m.d_model


def _either(value: bool | None, default: bool) -> bool:
    return default if value is None else value


def norm_bias(m: ModelConfig) -> bool:
    return _either(m.norm_bias, m.bias)


def attn_bias(m: ModelConfig) -> bool:
    return _either(m.attn_bias, m.bias)


def mlp_bias(m: ModelConfig) -> bool:
    return _either(m.mlp_bias, m.bias)


def rotary_dim(m: ModelConfig) -> int:
    """Dims of each head that RoPE rotates (all of them unless ``rope_fraction`` < 1)."""
    return int(round(head_dim(m) * m.rope_fraction))


# ---------------------------------------------------------------- validation


def _choice(value: str, key: str, options) -> None:
    if value not in options:
        raise ConfigError(
            f"{key}={value!r} is not an option; choose one of: {', '.join(sorted(options))}"
        )


def validate_model(m: ModelConfig) -> None:
    """Names, ranges, then the combinations that make no sense (docs/knobs.md lists them)."""
    from archlab.model.attention import ATTENTIONS
    from archlab.model.block import BLOCKS
    from archlab.model.init import INITS
    from archlab.model.mlp import MLPS
    from archlab.model.norm import NORMS, QK_NORM_SCOPES, QK_NORMS
    from archlab.model.placement import PLACEMENTS
    from archlab.model.position import POSITIONS
    from archlab.model.window import WINDOWS

    _choice(m.norm, "model.norm", NORMS)
    _choice(m.norm_placement, "model.norm_placement", PLACEMENTS)
    _choice(m.block, "model.block", BLOCKS)
    _choice(m.mlp, "model.mlp", MLPS)
    _choice(m.position, "model.position", POSITIONS)
    _choice(m.qk_norm, "model.qk_norm", QK_NORMS)
    _choice(m.qk_norm_scope, "model.qk_norm_scope", QK_NORM_SCOPES)
    _choice(m.attention, "model.attention", ATTENTIONS)
    _choice(m.window, "model.window", WINDOWS)
    _choice(m.init, "model.init", INITS)
    for key in (
        "n_layers",
        "d_model",
        "n_heads",
        "block_size",
        "vocab_size",
        "multiple_of",
        "sliding_window",
        "global_every",
    ):
        if getattr(m, key) <= 0:
            raise ConfigError(f"model.{key}={getattr(m, key)} must be a positive integer")
    for key in ("n_kv_heads", "head_dim", "d_ff"):
        if getattr(m, key) is not None and getattr(m, key) <= 0:
            raise ConfigError(
                f"model.{key}={getattr(m, key)} must be a positive integer (or null for default)"
            )
    for key in ("mlp_ratio", "attn_scale", "attn_softcap", "logit_softcap"):
        if getattr(m, key) is not None and not getattr(m, key) > 0:
            raise ConfigError(f"model.{key}={getattr(m, key)} must be > 0 (or null to turn it off)")
    for key in ("embed_dropout", "attn_dropout", "resid_dropout"):
        if not 0 <= getattr(m, key) < 1:
            raise ConfigError(f"model.{key}={getattr(m, key)} must be in [0, 1)")
    if m.iso_params and (m.d_ff is not None or m.mlp_ratio is not None):
        raise ConfigError(
            "model.iso_params=true chooses d_ff itself: drop model.d_ff / "
            "model.mlp_ratio, or set model.iso_params=false"
        )
    if m.d_ff is not None and m.mlp_ratio is not None:
        raise ConfigError(
            f"model.d_ff={m.d_ff} and model.mlp_ratio={m.mlp_ratio} both set the MLP width: "
            "keep one of them (set the other to null)"
        )
    if m.head_dim is None and m.d_model % m.n_heads:
        raise ConfigError(
            f"model.d_model={m.d_model} is not divisible by model.n_heads={m.n_heads}: "
            f"pick d_model as a multiple of n_heads, or set model.head_dim explicitly"
        )
    ATTENTIONS[m.attention].check(m)
    if m.position == "rope" and not 0 < m.rope_fraction <= 1:
        raise ConfigError(f"model.rope_fraction={m.rope_fraction} must be in (0, 1]")
    if m.position == "rope" and (rotary_dim(m) % 2 or rotary_dim(m) == 0):
        raise ConfigError(
            f"model.position=rope rotates pairs of dims, but model.rope_fraction={m.rope_fraction}"
            f" × head dim {head_dim(m)} = {head_dim(m) * m.rope_fraction:g} is not a positive "
            "even number: change rope_fraction, d_model or n_heads"
        )
    if m.position == "sinusoidal" and m.d_model % 2:
        raise ConfigError(
            f"model.position=sinusoidal pairs sin/cos dims, so model.d_model={m.d_model} must be "
            "even"
        )
    if m.window == "local_global_nope" and not POSITIONS[m.position].relative:
        raise ConfigError(
            f"model.window=local_global_nope removes positions from the global layers' attention,"
            f" but model.position={m.position} adds them to the embeddings once for all layers: "
            "use model/position=rope or alibi, or model/window=local_global"
        )
    if m.window.startswith("local_global") and m.global_every < 2:
        raise ConfigError(
            f"model.window={m.window} needs model.global_every >= 2 (got {m.global_every}): with 1"
            " every layer is global; use model/window=full"
        )
    if m.norm == "rmsnorm" and m.norm_bias:
        raise ConfigError(
            "model.norm_bias=true but model.norm=rmsnorm has no bias: use model/norm=layernorm, "
            "or set model.norm_bias=null"
        )
    if m.norm_eps <= 0 or m.init_std <= 0 or m.rope_theta <= 0 or m.logit_scale <= 0:
        raise ConfigError(
            "model.norm_eps, model.init_std, model.rope_theta and model.logit_scale must be > 0"
        )


BUDGET_KINDS = ("tokens", "flops", "seconds")


def _check_budget(t: TrainConfig) -> None:
    if t.budget is None:
        return
    kind, _, amount = str(t.budget).partition(":")
    try:
        value = float(amount)
    except ValueError:
        value = -1.0
    if kind not in BUDGET_KINDS or not value > 0:
        raise ConfigError(
            f"train.budget={t.budget} must be tokens:<n>, flops:<n> or seconds:<n> (n > 0)"
        )
    if t.max_steps != TrainConfig.max_steps:
        raise ConfigError(
            f"give train.budget={t.budget} or train.max_steps={t.max_steps}, not both "
            "(the budget sets max_steps)"
        )


def validate(cfg: ArchlabConfig) -> None:
    """Check a fully resolved config; raise ConfigError with one line on the first mistake."""
    validate_model(cfg.model)
    _choice(cfg.loss.name, "loss.name", {"ce", "z_loss"})
    if cfg.loss.name == "z_loss" and cfg.loss.z_loss_coef <= 0:
        raise ConfigError(
            f"loss=z_loss needs loss.z_loss_coef > 0 (got {cfg.loss.z_loss_coef}); "
            "use loss=ce to turn it off"
        )
    if cfg.loss.name == "ce" and cfg.loss.z_loss_coef != 0:
        raise ConfigError("loss.z_loss_coef is set but loss=ce: select loss=z_loss")
    from archlab.data.sources import SOURCES
    from archlab.data.tokenizers import TOKENIZERS

    _choice(cfg.data.source, "data.source", SOURCES)
    if cfg.data.source == "text" and not cfg.data.path:
        raise ConfigError("data=text needs data.path=<file or glob>")
    if cfg.data.max_docs is not None and cfg.data.max_docs <= 0:
        raise ConfigError(f"data.max_docs={cfg.data.max_docs} must be positive (or null for all)")
    _choice(cfg.tokenizer.name, "tokenizer.name", TOKENIZERS)
    TOKENIZERS[cfg.tokenizer.name].check(cfg.tokenizer)
    if not 0 < cfg.data.val_fraction < 1:
        raise ConfigError(f"data.val_fraction={cfg.data.val_fraction} must be in (0, 1)")
    for key in ("batch_size", "max_steps", "log_every", "val_every"):
        if getattr(cfg.train, key) <= 0:
            raise ConfigError(f"train.{key}={getattr(cfg.train, key)} must be a positive integer")
    if cfg.train.telemetry_every < 0:
        raise ConfigError(
            f"train.telemetry_every={cfg.train.telemetry_every} must be >= 0 (0: off)"
        )
    if any(not isinstance(k, int) or k < 2 for k in cfg.train.eval_context_multiples):
        raise ConfigError(
            f"train.eval_context_multiples={cfg.train.eval_context_multiples} must "
            "be whole numbers >= 2, e.g. [2,4]"
        )
    if cfg.train.divergence_factor > 0 and cfg.train.divergence_patience < 1:
        raise ConfigError(
            "train.divergence_patience must be >= 1 (or train.divergence_factor=0 "
            "to turn divergence stopping off)"
        )
    _check_budget(cfg.train)
    if cfg.data.val_windows <= 0:
        raise ConfigError(f"data.val_windows={cfg.data.val_windows} must be positive")
    o = cfg.optim
    if o.lr <= 0:
        raise ConfigError(f"optim.lr={o.lr} must be > 0")
    if o.warmup_steps < 0 or o.weight_decay < 0 or o.grad_clip < 0:
        raise ConfigError("optim.warmup_steps, optim.weight_decay and optim.grad_clip must be >= 0")
    if not 0 <= o.min_lr_ratio <= 1:
        raise ConfigError(f"optim.min_lr_ratio={o.min_lr_ratio} must be in [0, 1]")
    if not (0 <= o.beta1 < 1 and 0 <= o.beta2 < 1):
        raise ConfigError("optim.beta1 and optim.beta2 must be in [0, 1)")
    for kind in cfg.logger.kinds:
        _choice(kind, "logger.kinds", {"wandb", "csv", "tensorboard"})
    _choice(cfg.logger.mode, "logger.mode", {"offline", "online", "disabled"})
    _choice(cfg.trainer.accelerator, "trainer.accelerator", {"auto", "cpu", "gpu", "cuda", "mps"})
    if cfg.trainer.threads is not None and cfg.trainer.threads <= 0:
        raise ConfigError(f"trainer.threads={cfg.trainer.threads} must be positive (or null)")
    from archlab.train.faults import validate_reliability

    validate_reliability(cfg)


def to_dataclass(cfg) -> ArchlabConfig:
    """Turn a composed DictConfig into the typed ArchlabConfig (objects, not DictConfigs)."""
    from omegaconf import OmegaConf

    # merging plain data into the schema rejects keys the dataclasses do not have (also ones
    # added with `+key=value`) and values of the wrong type
    plain = OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else cfg
    typed = OmegaConf.merge(OmegaConf.structured(ArchlabConfig), plain)
    return OmegaConf.to_object(typed)
