"""Micro-benchmarks a claim asks for (``benchmark: [norm_ops]``): speed facts measured on the
layer itself at the claim's own shapes (:mod:`archlab.microbench`), shown in its report, never
a check.

A benchmark is measured once, by ``archlab reproduce`` after the claim's runs, and recorded
beside them (``benchmark-<name>.json``: the result, the machine, the load average before and
after, the commit); the report reads that record, so ``--report-only`` times nothing and
rewrites the same report anywhere. Delete the record to measure again.

Timing on a shared CPU is noisy: the candidates run in interleaved rounds in one process and
the record keeps each one's speedup per round against the first (median and min–max).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from archlab import microbench

ROUNDS = {False: 11, True: 2}  # interleaved rounds (smoke: True)
SECONDS = {False: 0.25, True: 0.01}  # per candidate and round


def norm_ops(cfg, smoke: bool) -> dict:
    """LayerNorm vs RMSNorm (F.layer_norm, F.rms_norm, archlab's modules, and archlab's RMSNorm
    under torch.compile unless smoke) on the claim's (batch, T, d_model) activation."""
    m = cfg.model
    shape = (cfg.train.batch_size, m.block_size, m.d_model)
    res = microbench.norm_bench(shape, ROUNDS[smoke], SECONDS[smoke], compiled=not smoke)
    return {"rounds": ROUNDS[smoke], "rows": [{"size": "claim", **res}]}


def blocks(cfg, smoke: bool) -> dict:
    """One serial vs one parallel block of the claim's model, and the parallel block's two
    input GEMMs vs one fused GEMM, at the claim's batch and T."""
    res = microbench.block_bench(cfg, cfg.train.batch_size, ROUNDS[smoke], SECONDS[smoke])
    return {"rounds": ROUNDS[smoke], "rows": [{"size": "claim", **res}]}


BENCHMARKS = {"norm_ops": norm_ops, "blocks": blocks}
TABLES = {
    "norm_ops": lambda res: microbench.norm_lines(res["rows"], res["rounds"]),
    "blocks": lambda res: microbench.block_lines(res["rows"]),
}


def record_path(records_dir: Path, name: str) -> Path:
    return Path(records_dir) / f"benchmark-{name}.json"


def read_record(records_dir: Path, name: str) -> dict | None:
    path = record_path(records_dir, name)
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def _record(claim, name: str, cfg, smoke: bool, threads: int) -> dict:
    from archlab.runs.machine import machine
    from archlab.runs.provenance import git_state

    before, start = machine(), time.time()
    result = BENCHMARKS[name](cfg, smoke)
    commit, dirty = git_state()
    return {
        "name": name,
        "claim": claim.id,
        "smoke": smoke,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "commit": commit + ("+dirty" if dirty else ""),
        "machine": {**before, "threads": threads},
        "load_after": machine()["load"],
        "seconds": round(time.time() - start, 1),
        "result": result,
    }


def measure(claim, records_dir: Path, smoke: bool, threads: int, log=print) -> list[str]:
    """Measure and record each of the claim's benchmarks not yet recorded in ``records_dir``
    (at ``threads`` threads, the campaign's per-job count); returns the names measured."""
    import torch

    from archlab.compose import Composer

    todo = [n for n in claim.benchmark if not record_path(records_dir, n).exists()]
    if not todo:
        return []
    job = [o for a, o in claim.jobs(smoke) if a == claim.baseline][-1]  # the top rung's shape
    with Composer() as composer:
        cfg = composer.compose(job, check=False)
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for name in todo:
            record = _record(claim, name, cfg, smoke, threads)
            Path(records_dir).mkdir(parents=True, exist_ok=True)
            text = json.dumps(record, indent=1) + "\n"
            record_path(records_dir, name).write_text(text, encoding="utf-8")
            log(f"[{claim.id}] benchmark {name}: recorded ({record['seconds']:.0f} s)")
    finally:
        torch.set_num_threads(torch_threads)
    return todo


def in_report(record: dict) -> dict:
    """What a report keeps of a record: the result and what it ran on, not when or under which
    load (a report holds no timestamps or load averages; the record does)."""
    mach = record["machine"]
    where = {k: mach.get(k) for k in ("cpu", "threads", "torch")}
    return {"name": record["name"], "commit": record["commit"], **where, "result": record["result"]}


def to_markdown(name: str, record: dict | None) -> list[str]:
    """The benchmark's table from its record, with what it was measured on."""
    if record is None:
        return [f"`{name}`: not measured yet (`archlab reproduce` measures it after the runs).", ""]
    r = in_report(record)
    where = (
        f"Measured at commit `{r['commit'][:7]}` on {r['cpu']}, {r['threads']} thread(s), "
        f"torch {r['torch']}; the load average before and after is in `{record_path('.', name)}` "
        "beside the runs (interleaved rounds share any load)."
    )
    return TABLES[name](r["result"]) + [where, ""]
