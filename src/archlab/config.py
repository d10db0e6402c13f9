"""Typed configuration: the schema and the values derived from it. A leaf: imports no archlab
module (docs/architecture.md).

Every knob is a plain value (``model.norm: rmsnorm``), so the resolved config is flat and
readable for W&B group-by and ``archlab compare``. The dataclasses below are registered as
Hydra structured-config schemas (``conf/train.yaml`` starts from ``archlab_schema``, see
:mod:`archlab.compose`), so Hydra rejects unknown keys and ill-typed values at composition
time; :mod:`archlab.validate` then checks the cross-field rules (each option's own rules live
next to the option, as ``check``) before anything is built. Every mistake becomes one
:class:`ConfigError` line that names the keys and the fix.

Derived values (head dim, kv heads, biases, rotary dims) are resolved here, in one place; the
MLP width depends on the MLP registry and the parameter count, so it lives in
:func:`archlab.model.flops.d_ff`.
"""

from __future__ import annotations

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
    max_docs: int | None = None  # hf: cap on documents read per split (None: all)
    max_tokens: int | None = None  # cap on training-split tokens ("the first 2B tokens")
    workers: int | None = None  # token-store build processes (None: every core)
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
    sample_bytes: int | None = None  # bpe: train on the first N bytes of the train split


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


DEFAULT_MAX_STEPS = 300  # train.max_steps when neither it nor train.budget is given


@dataclass
class TrainConfig:
    batch_size: int = 16  # the global batch: rows per optimizer step over all devices
    micro_batch_size: int | None = None  # rows per forward pass per device (None: no accumulation)
    # exactly one of max_steps and budget: None here means DEFAULT_MAX_STEPS without a budget
    # (resolved in __post_init__, the one place), so "both given" stays detectable
    max_steps: int | None = None
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

    def __post_init__(self) -> None:
        if self.max_steps is None and self.budget is None:
            self.max_steps = DEFAULT_MAX_STEPS


@dataclass
class LoggerConfig:
    kinds: list = field(default_factory=lambda: ["wandb"])  # any of: wandb, csv, tensorboard
    project: str = "archlab"
    entity: str | None = None
    group: str | None = None  # default: the sweep / experiment name
    mode: str = "offline"  # W&B mode: offline | online | disabled
    init_timeout: float = 10.0
    log_model: bool = False  # W&B: upload the final checkpoint as a `model` artifact


@dataclass
class TrainerConfig:
    accelerator: str = "auto"  # auto | cpu | gpu
    devices: Any = 1  # per node
    num_nodes: int = 1
    strategy: str = "auto"  # auto: ddp_spawn (GPUs) / ddp_notebook (CPU) / ddp under srun
    precision: str | None = None  # None: bf16-mixed on GPU, 32-true on CPU
    compile: bool = False
    compile_mode: str | None = None  # torch.compile mode: default | reduce-overhead | max-autotune
    threads: int | None = None  # CPU threads (None: all cores)
    deterministic: bool | None = None  # None: True on CPU


@dataclass
class PathsConfig:
    """Where archlab reads and writes besides ``out_dir`` (``conf/paths/default.yaml``)."""

    work_dir: str | None = None  # the launch directory; relative user paths resolve against it
    cache_dir: str = "~/.cache/archlab"  # token stores (data.cache_dir)


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
    paths: PathsConfig = field(default_factory=PathsConfig)
    seed: int = 0
    name: str = "default"  # experiment / sweep name (W&B group)
    out_dir: str = "outputs"
    resume: str | None = None  # null | auto (this run dir's last checkpoint) | <run dir>


# ---------------------------------------------------------------- derived values


def head_dim(m: ModelConfig) -> int:
    return m.head_dim if m.head_dim is not None else m.d_model // m.n_heads


def n_kv_heads(m: ModelConfig) -> int:
    return m.n_kv_heads if m.n_kv_heads is not None else m.n_heads


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
