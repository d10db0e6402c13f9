"""Shared test helpers (import them: ``from helpers import …``; conftest.py holds fixtures only).

``run_cli`` runs the real ``archlab`` entry point in a subprocess (``python -m archlab``) on
this checkout's ``src`` and ``conf``; ``tiny_model`` / ``tiny_config`` are the one tiny,
CPU-sized config the in-process tests train and build.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from archlab.config import ArchlabConfig, ModelConfig
from archlab.validate import validate_model

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
TINYSHAKESPEARE = SHARED / "data" / "tinyshakespeare.txt"

# fast, CPU-sized training overrides for end-to-end runs through the CLI
TINY = [
    "model/size=tiny",
    "train.max_steps=20",
    "train.log_every=5",
    "train.val_every=10",
    "train.batch_size=8",
    "data.val_windows=8",
]
TINY_MODEL = dict(n_layers=2, d_model=32, n_heads=2, block_size=32)


def tiny_model(**kw) -> ModelConfig:
    """A validated tiny ModelConfig (vocab 64 unless given)."""
    cfg = ModelConfig(**{**TINY_MODEL, "vocab_size": 64, **kw})
    validate_model(cfg)
    return cfg


def tiny_config(model: dict | None = None, **train) -> ArchlabConfig:
    """The tiny in-process training run: 12 steps of batch 4 on CPU, no loggers, the token
    cache under the test session's temp dir; ``model`` / ``train`` override fields."""
    cfg = ArchlabConfig()
    for k, v in {**TINY_MODEL, **(model or {})}.items():
        setattr(cfg.model, k, v)
    for k, v in {"max_steps": 12, "log_every": 3, "val_every": 6, "batch_size": 4, **train}.items():
        setattr(cfg.train, k, v)
    cfg.data.val_windows = 4
    cfg.data.cache_dir = os.environ["ARCHLAB_CACHE"]
    cfg.logger.kinds = []
    cfg.trainer.accelerator = "cpu"
    return cfg


def run_cli(*args: str, cwd: Path, timeout: float = 300, env: dict | None = None):
    full_env = {**os.environ, "PYTHONPATH": str(REPO / "src"), **(env or {})}
    # a W&B service started by an in-process test exports WANDB_SERVICE: a real CLI run has
    # its own service, so children must not attach to the test process's one
    full_env.pop("WANDB_SERVICE", None)
    return subprocess.run(
        [sys.executable, "-m", "archlab", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
