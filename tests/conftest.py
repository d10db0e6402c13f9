"""Test isolation: W&B, HF, matplotlib and the token cache write under a temp dir, never $HOME.

``run_cli`` runs the real ``archlab`` entry point in a subprocess (``python -m archlab``) on
this checkout's ``src`` and ``conf``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
TINYSHAKESPEARE = SHARED / "data" / "tinyshakespeare.txt"

# fast, CPU-sized training overrides for end-to-end runs
TINY = [
    "model/size=tiny",
    "train.max_steps=20",
    "train.log_every=5",
    "train.val_every=10",
    "train.batch_size=8",
    "data.val_windows=8",
]


@pytest.fixture(scope="session", autouse=True)
def isolated_env(tmp_path_factory):
    root = tmp_path_factory.mktemp("env")
    env = {
        "WANDB_DIR": root / "wandb",
        "WANDB_CACHE_DIR": root / "wandb-cache",
        "WANDB_CONFIG_DIR": root / "wandb-config",
        "WANDB_DATA_DIR": root / "wandb-data",
        "MPLCONFIGDIR": root / "mpl",
        "HF_HOME": root / "hf",
        "ARCHLAB_CACHE": root / "cache",
        "TMPDIR": root / "tmp",
    }
    for key, value in env.items():
        value.mkdir(parents=True, exist_ok=True)
        os.environ[key] = str(value)
    os.environ.update(
        WANDB_MODE="offline",
        WANDB_SILENT="true",
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        ARCHLAB_CONF=str(REPO / "conf"),
    )
    yield root


def run_cli(*args: str, cwd: Path, timeout: float = 300, env: dict | None = None):
    full_env = {**os.environ, "PYTHONPATH": str(REPO / "src"), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "archlab", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
