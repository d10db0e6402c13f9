"""Validation of a composed config: one :class:`ConfigError` line on the first mistake.

One floor above :mod:`archlab.config` (it needs the registries): every knob's option is looked
up in its registry (:data:`KNOBS`) and carries its own rules as ``check``; the rules that
belong to no single option (ranges, widths, divisibility) are here. Nothing here touches the
disk or the devices: those checks belong to the training edge
(:func:`archlab.train.faults.check_run_environment`).
"""

from __future__ import annotations

import dataclasses
import math

from archlab.config import ArchlabConfig, ConfigError, ModelConfig, TrainConfig
from archlab.data.sources import SOURCES
from archlab.data.tokenizers import TOKENIZERS
from archlab.model.attention import ATTENTIONS
from archlab.model.block import BLOCKS
from archlab.model.init import INITS
from archlab.model.mlp import MLPS
from archlab.model.norm import NORMS, QK_NORM_SCOPES, QK_NORMS
from archlab.model.placement import PLACEMENTS
from archlab.model.position import POSITIONS
from archlab.model.window import WINDOWS
from archlab.train.loss import LOSSES

# model.<knob> → its registry: one config group conf/model/<knob>/ per entry (tests check both)
KNOBS: dict[str, dict] = {
    "norm": NORMS,
    "norm_placement": PLACEMENTS,
    "block": BLOCKS,
    "mlp": MLPS,
    "position": POSITIONS,
    "qk_norm": QK_NORMS,
    "attention": ATTENTIONS,
    "window": WINDOWS,
    "init": INITS,
}
# the options whose ``check`` runs, in this order (qk_norm reuses NORMS, whose checks are about
# model.norm; "none" has no entry object)
CHECKED_KNOBS = (
    "norm_placement",
    "block",
    "mlp",
    "init",
    "attention",
    "position",
    "window",
    "norm",
)
LOGGER_KINDS = {"wandb", "csv", "tensorboard"}
LOGGER_MODES = {"offline", "online", "disabled"}
ACCELERATORS = {"auto", "cpu", "gpu", "cuda", "mps"}

_POSITIVE = (
    "n_layers",
    "d_model",
    "n_heads",
    "block_size",
    "vocab_size",
    "multiple_of",
    "sliding_window",
    "global_every",
)


def choice(value: str, key: str, options) -> None:
    """``key=value`` must be one of ``options`` (one line listing them otherwise)."""
    if value not in options:
        raise ConfigError(
            f"{key}={value!r} is not an option; choose one of: {', '.join(sorted(options))}"
        )


def _model_ranges(m: ModelConfig) -> None:
    for key in _POSITIVE:
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


def _model_shape(m: ModelConfig) -> None:
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
    if m.norm_eps <= 0 or m.init_std <= 0 or m.rope_theta <= 0 or m.logit_scale <= 0:
        raise ConfigError(
            "model.norm_eps, model.init_std, model.rope_theta and model.logit_scale must be > 0"
        )


def validate_model(m: ModelConfig) -> None:
    """Names, ranges, then each chosen option's own rules (docs/knobs.md lists them)."""
    for knob, registry in KNOBS.items():
        choice(getattr(m, knob), f"model.{knob}", registry)
    choice(m.qk_norm_scope, "model.qk_norm_scope", QK_NORM_SCOPES)
    _model_ranges(m)
    _model_shape(m)
    for knob in CHECKED_KNOBS:
        KNOBS[knob][getattr(m, knob)].check(m)


def _validate_data(cfg: ArchlabConfig) -> None:
    choice(cfg.data.source, "data.source", SOURCES)
    if cfg.data.source == "text" and not cfg.data.path:
        raise ConfigError("data=text needs data.path=<file or glob>")
    if cfg.data.max_docs is not None and cfg.data.max_docs <= 0:
        raise ConfigError(f"data.max_docs={cfg.data.max_docs} must be positive (or null for all)")
    choice(cfg.tokenizer.name, "tokenizer.name", TOKENIZERS)
    TOKENIZERS[cfg.tokenizer.name].check(cfg.tokenizer)
    if not 0 < cfg.data.val_fraction < 1:
        raise ConfigError(f"data.val_fraction={cfg.data.val_fraction} must be in (0, 1)")


def _validate_train(cfg: ArchlabConfig) -> None:
    t = cfg.train
    for key in ("batch_size", "max_steps", "log_every", "val_every"):
        if getattr(t, key) is not None and getattr(t, key) <= 0:  # max_steps: None with a budget
            raise ConfigError(f"train.{key}={getattr(t, key)} must be a positive integer")
    if t.telemetry_every < 0:
        raise ConfigError(f"train.telemetry_every={t.telemetry_every} must be >= 0 (0: off)")
    if any(not isinstance(k, int) or k < 2 for k in t.eval_context_multiples):
        raise ConfigError(
            f"train.eval_context_multiples={t.eval_context_multiples} must "
            "be whole numbers >= 2, e.g. [2,4]"
        )
    if t.divergence_factor > 0 and t.divergence_patience < 1:
        raise ConfigError(
            "train.divergence_patience must be >= 1 (or train.divergence_factor=0 "
            "to turn divergence stopping off)"
        )
    _check_budget(t)
    if cfg.data.val_windows <= 0:
        raise ConfigError(f"data.val_windows={cfg.data.val_windows} must be positive")


BUDGET_KINDS = ("tokens", "flops", "seconds")


def _check_budget(t: TrainConfig) -> None:
    """``train.budget=<kind>:<amount>`` instead of ``train.max_steps`` (exactly one of them)."""
    if t.budget is None:
        if t.max_steps is None:
            raise ConfigError("give train.max_steps=<n> or train.budget=<kind>:<amount>")
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
    if t.max_steps is not None:
        raise ConfigError(
            f"train.budget={t.budget} and train.max_steps={t.max_steps} are both given: keep "
            "one of them (the budget sets max_steps)"
        )


def _validate_optim(cfg: ArchlabConfig) -> None:
    o = cfg.optim
    if o.lr <= 0:
        raise ConfigError(f"optim.lr={o.lr} must be > 0")
    if o.warmup_steps < 0 or o.weight_decay < 0 or o.grad_clip < 0:
        raise ConfigError("optim.warmup_steps, optim.weight_decay and optim.grad_clip must be >= 0")
    if not 0 <= o.min_lr_ratio <= 1:
        raise ConfigError(f"optim.min_lr_ratio={o.min_lr_ratio} must be in [0, 1]")
    if not (0 <= o.beta1 < 1 and 0 <= o.beta2 < 1):
        raise ConfigError("optim.beta1 and optim.beta2 must be in [0, 1)")
    if not o.eps > 0:
        raise ConfigError(f"optim.eps={o.eps} must be > 0 (e.g. 1e-8)")


def non_finite(obj, prefix: str = "") -> str | None:
    """The first ``key=value`` of a config dataclass holding NaN or ±inf, or None."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            found = non_finite(value, f"{prefix}{f.name}.")
            if found:
                return found
        elif isinstance(value, float) and not math.isfinite(value):
            return f"{prefix}{f.name}={value}"
    return None


def _validate_identity(cfg: ArchlabConfig) -> None:
    """Finite numbers everywhere, a usable seed, and a name that is one folder name."""
    bad = non_finite(cfg)
    if bad:
        raise ConfigError(f"{bad} is not a finite number: give a real value")
    if not 0 <= cfg.seed < 2**32:
        raise ConfigError(f"seed={cfg.seed} must be an integer in [0, 2**32)")
    name = str(cfg.name)
    if not name or "/" in name or "\\" in name or "\0" in name or name in (".", ".."):
        raise ConfigError(
            f"name={name} must be a single folder name (no '/', not '.' or '..'): "
            "it names the sweep folder under out_dir"
        )


def _validate_outputs(cfg: ArchlabConfig) -> None:
    for kind in cfg.logger.kinds:
        choice(kind, "logger.kinds", LOGGER_KINDS)
    choice(cfg.logger.mode, "logger.mode", LOGGER_MODES)
    choice(cfg.trainer.accelerator, "trainer.accelerator", ACCELERATORS)
    if cfg.trainer.threads is not None and cfg.trainer.threads <= 0:
        raise ConfigError(f"trainer.threads={cfg.trainer.threads} must be positive (or null)")
    if cfg.train.ckpt_every is not None and cfg.train.ckpt_every < 0:
        raise ConfigError(
            f"train.ckpt_every={cfg.train.ckpt_every} must be >= 0 (0: no checkpoints)"
        )


def validate(cfg: ArchlabConfig) -> None:
    """Check a fully resolved config; raise ConfigError with one line on the first mistake.
    No disk, network or device access (see the module docstring)."""
    _validate_identity(cfg)
    validate_model(cfg.model)
    choice(cfg.loss.name, "loss.name", LOSSES)
    LOSSES[cfg.loss.name].check(cfg.loss)
    _validate_data(cfg)
    _validate_train(cfg)
    _validate_optim(cfg)
    _validate_outputs(cfg)
