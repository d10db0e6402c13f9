"""Campaign records: every finished claim run as a compact, committed record.

A run trains in a scratch sweep (outside git, ``<scratch>/sweeps/claim-<id>/<job dir>/``) and,
when it finishes (completed or diverged), is copied to ``<records>/<claim>/<run>/``::

    config.yaml          the resolved config
    summary.json         status, losses, overrides, provenance (+ a ``record`` block: the corpus
                         content hash and the job layout it trained under)
    metrics.jsonl.gz     the metric lines, gzipped

Nothing else (no checkpoints, no W&B folders). A job whose resolved config (seed and LR
included; names, paths, loggers and threads not) equals a record of another claim is not
trained again: ``share_records`` copies that record into this claim, its summary naming the
source (``record.shared_from``) and carrying this claim's overrides. The claim's protocol files
(``preregistration.json``, ``lr_pick.json``) are copied beside the runs. ``restore`` writes
the records back into a scratch sweep in the layout the runner reads, so a reproduce on any
machine skips what is recorded and a report is built from the records alone.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from archlab.claims.registry import Claim, ClaimError
from archlab.claims.runner import is_done, sweep_dir
from archlab.runs.naming import job_dirname

FILES = ("config.yaml", "summary.json")
METRICS = "metrics.jsonl"
PROTOCOL_FILES = ("preregistration.json", "lr_pick.json", "confirm_seeds.json")


def claim_records_dir(records_root: Path, claim: Claim) -> Path:
    return Path(records_root) / claim.id


def run_name(arm: str, overrides: list[str], claim: Claim, smoke: bool = False) -> str:
    """``<arm>-lr<lr>-s<seed>`` (``-r<k>`` for a ladder rung k): short, unique within a claim."""
    values = {o.split("=", 1)[0].lstrip("+~"): o.split("=", 1)[1] for o in overrides if "=" in o}
    name = arm
    if len(claim.rungs(smoke)) > 1:
        name += f"-r{claim.rung_of(overrides, smoke)}"
    if "optim.lr" in values:
        name += f"-lr{float(values['optim.lr']):g}"
    return f"{name}-s{values.get('seed', '0')}"


def arm_of(claim: Claim, overrides: list[str], smoke: bool) -> str | None:
    from archlab.claims.registry import signature

    return claim.arm_signatures(smoke).get(signature(overrides))


def write_record(run_dir: Path, dest: Path, extra: dict[str, Any]) -> Path:
    """Copy one finished run's record to ``dest`` (replacing an older copy); returns dest."""
    run_dir, dest = Path(run_dir), Path(dest)
    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shutil.copyfile(run_dir / "config.yaml", tmp / "config.yaml")
    summary = json.loads((run_dir / "summary.json").read_text())
    for key in ("run_dir", "wandb_dir"):  # machine paths: meaningless in a record
        summary.pop(key, None)
    summary["record"] = extra
    (tmp / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    metrics = run_dir / METRICS
    data = metrics.read_bytes() if metrics.exists() else b""
    with gzip.GzipFile(tmp / f"{METRICS}.gz", "wb", mtime=0) as f:
        f.write(data)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return dest


def record_run(
    claim: Claim,
    records_root: Path,
    overrides: list[str],
    summary: dict,
    run_dir: Path,
    smoke: bool,
    extra: dict[str, Any],
) -> Path | None:
    """Record a finished job (completed or diverged); failed/interrupted runs are not records."""
    if not is_done(summary, overrides):
        return None
    arm = arm_of(claim, overrides, smoke) or "unknown"
    dest = claim_records_dir(records_root, claim) / run_name(arm, overrides, claim, smoke)
    return write_record(run_dir, dest, extra)


def record_finished(
    claim: Claim, scratch_root: Path, records_root: Path, jobs, smoke: bool, extra: dict[str, Any]
) -> int:
    """Record the jobs finished in the scratch sweep but not recorded (an interrupted session
    on this machine); returns how many."""
    from archlab.runs.record import read_summary

    sweep, n = sweep_dir(scratch_root, claim), 0
    for arm, overrides in jobs:
        dest = claim_records_dir(records_root, claim) / run_name(arm, overrides, claim, smoke)
        summary = read_summary(sweep / job_dirname(overrides))
        if not (dest / "summary.json").exists() and is_done(summary, overrides):
            prereg = {**extra, "preregistration": read_prereg_hash(sweep)}
            n += bool(
                record_run(
                    claim,
                    records_root,
                    overrides,
                    summary,
                    sweep / job_dirname(overrides),
                    smoke,
                    prereg,
                )
            )
    return n


def read_prereg_hash(sweep: Path) -> str | None:
    try:
        return json.loads((Path(sweep) / "preregistration.json").read_text()).get("hash")
    except (OSError, ValueError):
        return None


def record_dirs(records_root: Path, claim: Claim) -> list[Path]:
    root = claim_records_dir(records_root, claim)
    if not root.exists():
        return []
    return sorted(p for p in root.iterdir() if (p / "summary.json").exists())


def read_summaries(records_root: Path, claim: Claim) -> list[dict]:
    return [json.loads((p / "summary.json").read_text()) for p in record_dirs(records_root, claim)]


def restore(records_root: Path, claim: Claim, scratch_root: Path) -> int:
    """Write every record (and the protocol files) into the scratch sweep the runner reads.
    A scratch run that is already done is left alone; returns the number of runs restored."""
    sweep = sweep_dir(scratch_root, claim)
    n = 0
    for rec in record_dirs(records_root, claim):
        summary = json.loads((rec / "summary.json").read_text())
        overrides = list(summary.get("overrides") or [])
        target = sweep / job_dirname(overrides)
        if (target / "summary.json").exists():
            try:
                if is_done(json.loads((target / "summary.json").read_text()), overrides):
                    continue
            except ValueError:
                pass
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        shutil.copyfile(rec / "config.yaml", target / "config.yaml")
        (target / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        with gzip.open(rec / f"{METRICS}.gz", "rb") as f:
            (target / METRICS).write_bytes(f.read())
        n += 1
    copy_protocol_files(claim_records_dir(records_root, claim), sweep)
    return n


def copy_protocol_files(src: Path, dest: Path) -> None:
    """Pre-registration and LR pick: copied where missing, never overwritten."""
    for name in PROTOCOL_FILES:
        if (src / name).exists() and not (dest / name).exists():
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src / name, dest / name)


def refuse_incompatible(claim: Claim, records_root: Path, current: dict[str, Any]) -> None:
    """Before training: refuse (one line) when this machine's provenance differs from the
    recorded runs' in a key that changes results (the runner's pooling check, reused)."""
    from archlab.runs.provenance import RESULT_KEYS, pooling_differences

    recorded = [SimpleNamespace(summary=s) for s in read_summaries(records_root, claim)]
    if not recorded:
        return
    here = SimpleNamespace(summary={"provenance": current})
    diffs = pooling_differences([*recorded, here], RESULT_KEYS)
    if diffs:
        raise ClaimError(
            f"claim {claim.id}: this machine cannot add runs to its {len(recorded)} records: "
            f"{'; '.join(diffs)} (re-run the claim from scratch, or run where they match)"
        )


def check_sizes(records_root: Path, claim: Claim, limit_kb: int = 200) -> list[str]:
    """Records larger than ``limit_kb`` or holding files other than the three (problems)."""
    bad = []
    for rec in record_dirs(records_root, claim):
        names = sorted(p.name for p in rec.iterdir())
        if names != sorted([*FILES, f"{METRICS}.gz"]):
            bad.append(f"{rec.name}: unexpected files {names}")
        size = sum(p.stat().st_size for p in rec.iterdir()) / 1024
        if size > limit_kb:
            bad.append(f"{rec.name}: {size:.0f} kB > {limit_kb} kB")
    return bad


# --------------------------------------------------------------------------- shared runs

NOT_IDENTITY = ("name", "out_dir", "paths", "resume", "logger", "data_info")
NOT_IDENTITY_IN = {"data": ("cache_dir",), "model": ("vocab_size",), "trainer": ("threads",)}


def config_identity(config: dict[str, Any]) -> str:
    """A resolved config's identity: what decides the run's numbers (seed and LR included;
    names, output paths, loggers, cache dirs and threads not)."""
    kept = {k: v for k, v in config.items() if k not in NOT_IDENTITY}
    for group, keys in NOT_IDENTITY_IN.items():
        if isinstance(kept.get(group), dict):
            kept[group] = {k: v for k, v in kept[group].items() if k not in keys}
    text = json.dumps(kept, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def composed_identity(composer, overrides: list[str]) -> str:
    """The identity of a job's config composed from its overrides (no training)."""
    from omegaconf import OmegaConf

    cfg = composer.compose(list(overrides), check=False)
    return config_identity(OmegaConf.to_container(OmegaConf.structured(cfg)))


def record_identities(records_root: Path, but: Claim) -> dict[str, Path]:
    """identity -> record dir, over the records of every claim other than ``but``."""
    import yaml

    out: dict[str, Path] = {}
    root = Path(records_root)
    if not root.exists():
        return out
    for claim_dir in sorted(p for p in root.iterdir() if p.is_dir() and p.name != but.id):
        for rec in sorted(p for p in claim_dir.iterdir() if (p / "summary.json").exists()):
            if json.loads((rec / "summary.json").read_text()).get("record", {}).get("shared_from"):
                continue  # share originals only
            config = yaml.safe_load((rec / "config.yaml").read_text()) or {}
            out.setdefault(config_identity(config), rec)
    return out


def share_records(
    claim: Claim, records_root: Path, jobs, smoke: bool, extra: dict[str, Any], identity
) -> list[str]:
    """Copy into ``claim`` the records of other claims whose config equals a job's (the job
    is then skipped as recorded); ``identity(overrides)`` gives a job's identity. Returns
    the names of the records shared."""
    index, shared = None, []
    for arm, overrides in jobs:
        dest = claim_records_dir(records_root, claim) / run_name(arm, overrides, claim, smoke)
        if (dest / "summary.json").exists():
            continue
        index = record_identities(records_root, claim) if index is None else index
        src = index.get(identity(overrides)) if index else None
        if src is None:
            continue
        summary = json.loads((src / "summary.json").read_text())
        source = {"shared_from": f"{src.parent.name}/{src.name}",
                  "source_overrides": summary.get("overrides")}  # fmt: skip
        summary["overrides"] = list(overrides)
        summary["record"] = {**(summary.get("record") or {}), **extra, **source}
        tmp = dest.with_name(dest.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(src, tmp)
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
        shutil.rmtree(dest, ignore_errors=True)
        tmp.rename(dest)
        shared.append(f"{dest.name} ← {source['shared_from']}")
    return shared
