"""Inputs that used to train silently wrong, or crash with a traceback, are refused before
anything exists: exit 2, one line naming the key, no output directory (docs/reliability.md)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from helpers import TINY, run_cli

CASES = [
    ("seed=-1", "seed=-1"),
    ("optim.lr=nan", "optim.lr=nan"),
    ("optim.lr=inf", "optim.lr=inf"),
    ("optim.eps=-1", "optim.eps=-1"),
    ("model.init_std=inf", "model.init_std=inf"),
    ("optim.weight_decay=nan", "optim.weight_decay=nan"),
    ("optim.grad_clip=nan", "optim.grad_clip=nan"),
    ("model.rope_theta=nan", "model.rope_theta=nan"),
    ("train.divergence_factor=nan", "train.divergence_factor=nan"),
    ("name=../../../escaped", "single folder name"),
    ("out_dir=/proc", "pseudo file system"),
    ("out_dir=/sys/kernel/archlab", "pseudo file system"),
    ("model.d_model=1000000", "ARCHLAB_MEMORY_CHECK=0"),
    ("train.batch_size=100000000", "train.batch_size"),
]


@pytest.fixture(scope="module")
def refusals(tmp_path_factory):
    root = tmp_path_factory.mktemp("refusals")

    def one(case):
        override, _ = case
        cwd = root / str(CASES.index(case))
        (cwd / "a" / "b").mkdir(parents=True)
        sweep = ["-m"] if override.startswith("name=") else []
        out = [] if override.startswith("out_dir") else ["out_dir=out"]
        r = run_cli("train", *sweep, *TINY, "logger=none", *out, override, cwd=cwd / "a" / "b")
        return r, cwd

    with ThreadPoolExecutor(2) as pool:
        return dict(zip([c[0] for c in CASES], pool.map(one, CASES)))


@pytest.mark.slow  # 14 CLI start-ups (~1-2 min); .ci/run runs tests/faults -m slow
@pytest.mark.parametrize("override,words", CASES, ids=[c[0] for c in CASES])
def test_refused_in_one_line_before_anything_exists(refusals, override, words):
    r, cwd = refusals[override]
    err = r.stderr.strip()
    assert r.returncode == 2, err[-2000:]
    assert err.count("\n") == 0 and err.startswith("archlab train: error:"), err[-2000:]
    assert words in err and "Traceback" not in err
    assert [p.name for p in cwd.rglob("*")] == ["a", "b"]  # nothing created, above or below
