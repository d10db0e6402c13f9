"""The campaign's pinned corpus: runs on any other corpus are refused before training.

``data=stdlib`` reads the standard library of whichever Python runs it (3.10–3.13 differ by up
to 77 files and 3 MB), so the campaign fixes the interpreter: ``experiments/corpus-pin.json``
records the corpus identity (the content hash the run provenance records as ``corpus``) and
the Python version it was taken with. Every non-smoke ``archlab reproduce`` computes the hash
of each claim's corpus and refuses, with one line, when it differs. The pin is (re)taken with
``archlab reproduce --pin-corpus``, which refuses while campaign records exist on another pin.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

from archlab.claims.registry import ClaimError


def pin_file(experiments: Path) -> Path:
    """``<experiments>/corpus-pin.json`` (experiments/ is the claims dir's parent), or
    ``$ARCHLAB_CORPUS_PIN``."""
    return Path(os.environ.get("ARCHLAB_CORPUS_PIN") or Path(experiments) / "corpus-pin.json")


def corpus_hash(data_cfg) -> str:
    """The corpus identity the run provenance records (the data layer's content hash)."""
    from archlab.data.store import corpus_fingerprint

    return corpus_fingerprint(data_cfg)


def read_pin(path: Path) -> dict[str, Any] | None:
    try:
        pin = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return pin if isinstance(pin, dict) and pin.get("fingerprint") else None


def take_pin(data_cfg, path: Path) -> dict[str, Any]:
    pin = {
        "data": data_cfg.source,
        "val_fraction": data_cfg.val_fraction,
        "fingerprint": corpus_hash(data_cfg),
        "python": platform.python_version(),
        "note": "data=stdlib reads the running interpreter's standard library: the campaign "
        "runs with this Python version; any other corpus is refused",
    }
    Path(path).write_text(json.dumps(pin, indent=2) + "\n")
    return pin


def check(claim_id: str, data_cfgs: list, pin: dict[str, Any] | None, path: Path) -> str:
    """The pinned fingerprint when every data config of the claim hashes to it; else one line."""
    if pin is None:
        raise ClaimError(
            f"claim {claim_id}: the campaign has no pinned corpus ({Path(path).name} missing): "
            "take it with `archlab reproduce --pin-corpus` and commit it"
        )
    seen: dict[str, str] = {}
    for cfg in data_cfgs:
        key = repr(cfg)
        if key not in seen:
            seen[key] = corpus_hash(cfg)
        if seen[key] != pin["fingerprint"]:
            raise ClaimError(
                f"claim {claim_id}: corpus {seen[key]} (data={cfg.source}, Python "
                f"{platform.python_version()}) is not the campaign's pinned corpus "
                f"{pin['fingerprint']} (data={pin.get('data')}, Python {pin.get('python')}): "
                f"run with Python {pin.get('python')}, or re-pin before the first record"
            )
    return pin["fingerprint"]
