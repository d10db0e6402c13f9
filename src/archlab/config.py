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
from typing import Any, Optional


class ConfigError(ValueError):
    """A user mistake in the configuration: printed as one line, no traceback."""


@dataclass
class ModelConfig:
    # knobs (each one is a config group under conf/model/<knob>/)
    norm: str = "rmsnorm"  # layernorm | rmsnorm
    norm_placement: str = "pre"  # pre | post
    mlp: str = "swiglu"  # gelu | swiglu
    position: str = "rope"  # learned | rope
    qk_norm: str = "none"  # none | rmsnorm | layernorm
    attention: str = "mha"  # mha | gqa | mqa
    # shape (conf/model/size/)
    n_layers: int = 4
    d_model: int = 128
    n_heads: int = 4
    n_kv_heads: Optional[int] = None  # None: = n_heads (MHA)
    head_dim: Optional[int] = None  # None: d_model // n_heads
    d_ff: Optional[int] = None  # None: param-matched default (4·d, or 8/3·d for gated MLPs)
    multiple_of: int = 32  # gated d_ff is rounded up to a multiple of this
    block_size: int = 128  # context length (max positions)
    vocab_size: int = 256  # set from the tokenizer
    # details
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    bias: bool = False
    tie_embeddings: bool = True
    init_std: float = 0.02


@dataclass
class LossConfig:
    name: str = "ce"  # ce | z_loss
    z_loss_coef: float = 0.0


@dataclass
class DataConfig:
    source: str = "stdlib"  # stdlib | text
    path: Optional[str] = None  # file or glob, for source=text
    tokenizer: str = "byte"
    val_fraction: float = 0.02  # stdlib: fraction of files; text: tail of each file
    val_windows: int = 32  # fixed validation windows (same for every arm and seed)
    cache_dir: str = "~/.cache/archlab"


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
    ckpt_every: Optional[int] = None  # checkpoint every N steps (None: = val_every; 0: never)


@dataclass
class LoggerConfig:
    kinds: list = field(default_factory=lambda: ["wandb"])  # any of: wandb, csv, tensorboard
    project: str = "archlab"
    entity: Optional[str] = None
    group: Optional[str] = None  # default: the sweep / experiment name
    mode: str = "offline"  # W&B mode: offline | online | disabled
    init_timeout: float = 10.0


@dataclass
class TrainerConfig:
    accelerator: str = "auto"  # auto | cpu | gpu
    devices: Any = 1
    strategy: str = "auto"
    precision: Optional[str] = None  # None: bf16-mixed on GPU, 32-true on CPU
    compile: bool = False
    threads: Optional[int] = None  # CPU threads (None: all cores)
    deterministic: Optional[bool] = None  # None: True on CPU


@dataclass
class ArchlabConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    seed: int = 0
    name: str = "default"  # experiment / sweep name (W&B group)
    out_dir: str = "outputs"
    resume: Optional[str] = None  # null | auto (this run dir's last checkpoint) | <run dir>


def register_schema() -> None:
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="archlab_schema", node=ArchlabConfig)


# ---------------------------------------------------------------- derived values


def head_dim(m: ModelConfig) -> int:
    return m.head_dim if m.head_dim is not None else m.d_model // m.n_heads


def n_kv_heads(m: ModelConfig) -> int:
    return m.n_kv_heads if m.n_kv_heads is not None else m.n_heads


def d_ff(m: ModelConfig) -> int:
    """Hidden width of the MLP: param-matched defaults unless ``model.d_ff`` is set."""
    if m.d_ff is not None:
        return m.d_ff
    from archlab.model.mlp import MLPS

    if MLPS[m.mlp].gated:  # 3 matrices: 8/3·d keeps 3·d·d_ff ≈ 8·d² (Shazeer 2020)
        width = int(8 * m.d_model / 3)
        return m.multiple_of * math.ceil(width / m.multiple_of)
    return 4 * m.d_model


# ---------------------------------------------------------------- validation


def _choice(value: str, key: str, options) -> None:
    if value not in options:
        raise ConfigError(
            f"{key}={value!r} is not an option; choose one of: {', '.join(sorted(options))}"
        )


def validate_model(m: ModelConfig) -> None:
    from archlab.model.attention import ATTENTIONS
    from archlab.model.mlp import MLPS
    from archlab.model.norm import NORMS, QK_NORMS
    from archlab.model.placement import PLACEMENTS
    from archlab.model.position import POSITIONS

    _choice(m.norm, "model.norm", NORMS)
    _choice(m.norm_placement, "model.norm_placement", PLACEMENTS)
    _choice(m.mlp, "model.mlp", MLPS)
    _choice(m.position, "model.position", POSITIONS)
    _choice(m.qk_norm, "model.qk_norm", QK_NORMS)
    _choice(m.attention, "model.attention", ATTENTIONS)
    for key in ("n_layers", "d_model", "n_heads", "block_size", "vocab_size", "multiple_of"):
        if getattr(m, key) <= 0:
            raise ConfigError(f"model.{key}={getattr(m, key)} must be a positive integer")
    for key in ("n_kv_heads", "head_dim", "d_ff"):
        if getattr(m, key) is not None and getattr(m, key) <= 0:
            raise ConfigError(
                f"model.{key}={getattr(m, key)} must be a positive integer (or null for default)"
            )
    if m.head_dim is None and m.d_model % m.n_heads:
        raise ConfigError(
            f"model.d_model={m.d_model} is not divisible by model.n_heads={m.n_heads}: "
            f"pick d_model as a multiple of n_heads, or set model.head_dim explicitly"
        )
    ATTENTIONS[m.attention].check(m)
    if m.position == "rope" and head_dim(m) % 2:
        raise ConfigError(
            f"model.position=rope needs an even head dim, got {head_dim(m)} "
            f"(model.d_model={m.d_model} / model.n_heads={m.n_heads}): change d_model or n_heads"
        )
    if m.norm_eps <= 0 or m.init_std <= 0 or m.rope_theta <= 0:
        raise ConfigError("model.norm_eps, model.init_std and model.rope_theta must be > 0")


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

    _choice(cfg.data.source, "data.source", SOURCES)
    if cfg.data.source == "text" and not cfg.data.path:
        raise ConfigError("data=text needs data.path=<file or glob>")
    if not 0 < cfg.data.val_fraction < 1:
        raise ConfigError(f"data.val_fraction={cfg.data.val_fraction} must be in (0, 1)")
    for key in ("batch_size", "max_steps", "log_every", "val_every"):
        if getattr(cfg.train, key) <= 0:
            raise ConfigError(f"train.{key}={getattr(cfg.train, key)} must be a positive integer")
    if cfg.train.divergence_factor > 0 and cfg.train.divergence_patience < 1:
        raise ConfigError("train.divergence_patience must be >= 1 (or train.divergence_factor=0 "
                          "to turn divergence stopping off)")
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
