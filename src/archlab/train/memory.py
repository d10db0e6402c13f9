"""Will the run fit? A rough upper estimate of training memory, checked before anything is
built or created, so ``model.d_model=1000000`` or ``train.batch_size=100000000`` is refused in
one line instead of swapping, ignoring SIGTERM and dying of an OOM kill after creating the run
directory.

Estimate (fp32 master weights): 16 bytes per parameter (weights, gradients, AdamW's two
moments) plus the activations of one forward/backward pass of one micro-batch on one device:
per token and layer about ``2·(34·d_model + 5·n_heads·block_size)`` bytes (the fp32 form of
Korthikanti et al.'s 34·s·b·h + 5·a·s²·b), and three fp32 copies of the logits. The budget is
the memory available now (``MemAvailable``; the free memory of the GPU on GPU runs).
``ARCHLAB_MEMORY_CHECK=0`` skips the check for users who know better.
"""

from __future__ import annotations

import os

from archlab.config import ArchlabConfig, ConfigError
from archlab.model.flops import param_count

ENV = "ARCHLAB_MEMORY_CHECK"
GB = 1024**3


def rows_per_pass(cfg: ArchlabConfig) -> int:
    """Rows one device holds activations for: the micro-batch, else its share of the batch."""
    micro = getattr(cfg.train, "micro_batch_size", None)
    if micro:
        return int(micro)
    devices = cfg.trainer.devices if isinstance(cfg.trainer.devices, int) else 1
    return max(1, cfg.train.batch_size // max(1, devices))


def estimate_bytes(cfg: ArchlabConfig) -> int:
    m = cfg.model
    tokens = rows_per_pass(cfg) * m.block_size
    per_token_layer = 2 * (34 * m.d_model + 5 * m.n_heads * m.block_size)
    activations = tokens * (m.n_layers * per_token_layer + 3 * 4 * m.vocab_size)
    return 16 * param_count(m) + activations


def available_bytes(cfg: ArchlabConfig) -> tuple[int | None, str]:
    """(bytes, what) this run may use; None when unknown (then nothing is refused)."""
    wants_gpu = cfg.trainer.accelerator in ("gpu", "cuda")
    if wants_gpu or cfg.trainer.accelerator == "auto":
        import torch  # only here: the up-front check stays light on CPU-only machines

        if torch.cuda.is_available():
            free, _ = torch.cuda.mem_get_info()
            return free, "free GPU memory"
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        return int(info["MemAvailable"].split()[0]) * 1024, "available RAM"
    except (OSError, KeyError, ValueError):
        return None, ""


def check_memory(cfg: ArchlabConfig) -> None:
    """One line if the estimate exceeds what is available (``ARCHLAB_MEMORY_CHECK=0``: skip)."""
    if os.environ.get(ENV, "1") == "0":
        return
    need = estimate_bytes(cfg)
    have, what = available_bytes(cfg)
    if have is None or need <= have:
        return
    raise ConfigError(
        f"this run needs about {need / GB:,.1f} GB (model.d_model={cfg.model.d_model}, "
        f"model.n_layers={cfg.model.n_layers}, {rows_per_pass(cfg)} rows × "
        f"model.block_size={cfg.model.block_size} per pass) but {what} is {have / GB:,.1f} GB: "
        f"use a smaller model or train.batch_size (or train.micro_batch_size); "
        f"{ENV}=0 skips this estimate"
    )
