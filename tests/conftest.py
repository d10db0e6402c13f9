"""Test isolation: W&B, HF, matplotlib and the token cache write under a temp dir, never $HOME.

Fixtures only; shared helpers (``run_cli``, ``tiny_config`` …) live in ``helpers.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


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
