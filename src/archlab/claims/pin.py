"""The campaign's pinned corpus: runs on any other corpus are refused before training.

``data=stdlib`` reads the standard library of whichever Python runs it (3.10–3.13 differ by up
to 77 files and 3 MB), so the campaign fixes the interpreter: ``experiments/corpus-pin.json``
records the corpus identity (the content hash the run provenance records as ``corpus``) and
the Python version it was taken with. Every non-smoke ``archlab reproduce`` computes the hash
of each claim's corpus and refuses, with one line, when it differs. The pin is (re)taken with
``archlab reproduce --pin-corpus``, which refuses while campaign records exist on another pin.

A claim on another corpus (a local file: ``data=text data.path=...``) needs that corpus
pinned too: ``archlab reproduce --pin-corpus <id>`` adds its source to the pin's ``others``
(never changing an existing entry). Each claim trains on exactly one pinned corpus; a source
that is not pinned, or a claim mixing corpora, is refused with one line.
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


def entry_for(pin: dict[str, Any], data_cfg) -> dict[str, Any] | None:
    """The pin entry of a data config's source (source and path), None when not pinned."""
    for entry in [pin, *(pin.get("others") or [])]:
        if entry.get("data") == data_cfg.source and entry.get("path") == data_cfg.path:
            return entry
    return None


def add_source(data_cfg, path: Path) -> dict[str, Any] | None:
    """Pin another data source (a file corpus) beside the campaign's; returns the new entry,
    None when the source is pinned already (an entry is never changed)."""
    pin = read_pin(path)
    if pin is None:
        raise ClaimError(f"{Path(path).name} missing: pin the campaign's corpus first")
    if entry_for(pin, data_cfg) is not None:
        return None
    entry = {
        "data": data_cfg.source,
        "path": data_cfg.path,
        "val_fraction": data_cfg.val_fraction,
        "fingerprint": corpus_hash(data_cfg),
        "note": "a file corpus: its content hash, whatever the interpreter",
    }
    pin["others"] = [*(pin.get("others") or []), entry]
    Path(path).write_text(json.dumps(pin, indent=2) + "\n")
    return entry


def _where(cfg) -> str:
    return f"data={cfg.source}" + (f" data.path={cfg.path}" if cfg.path else "")


def check(claim_id: str, data_cfgs: list, pin: dict[str, Any] | None, path: Path) -> str:
    """The pinned fingerprint of the claim's one corpus when every data config of the claim
    hashes to its source's pin; else one line."""
    if pin is None:
        raise ClaimError(
            f"claim {claim_id}: the campaign has no pinned corpus ({Path(path).name} missing): "
            "take it with `archlab reproduce --pin-corpus` and commit it"
        )
    seen: dict[str, str] = {}
    pinned: set[str] = set()
    for cfg in data_cfgs:
        entry = entry_for(pin, cfg)
        if entry is None:
            raise ClaimError(
                f"claim {claim_id}: corpus {_where(cfg)} is not pinned in {Path(path).name}: "
                f"pin it with `archlab reproduce --pin-corpus {claim_id}` and commit it"
            )
        key = repr(cfg)
        if key not in seen:
            seen[key] = corpus_hash(cfg)
        if seen[key] != entry["fingerprint"]:
            raise ClaimError(
                f"claim {claim_id}: corpus {seen[key]} ({_where(cfg)}, Python "
                f"{platform.python_version()}) is not the campaign's pinned corpus "
                f"{entry['fingerprint']} (data={entry.get('data')}, Python "
                f"{entry.get('python', 'any')}): run with Python {entry.get('python', 'any')}, "
                "or re-pin before the first record"
            )
        pinned.add(entry["fingerprint"])
    if len(pinned) > 1:
        raise ClaimError(
            f"claim {claim_id}: its arms train on {len(pinned)} corpora; runs on different "
            "corpora are never pooled: one corpus per claim (split the claim)"
        )
    return pinned.pop() if pinned else pin["fingerprint"]
