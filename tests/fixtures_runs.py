"""Synthesize run directories that follow the ``archlab train`` run-record contract.

Curves are deterministic: ``loss(step) = final + (init - final) * exp(-step / 25)``, so the
last logged val loss equals ``final`` exactly and the first train loss is close to ``init``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import yaml

FLOPS_PER_TOKEN = 1.5e6


def base_config(seed: int, name: str, out_dir: Path) -> dict:
    return {
        "model": {
            "norm": "rmsnorm",
            "norm_placement": "pre",
            "mlp": "swiglu",
            "position": "rope",
            "qk_norm": "none",
            "attention": "mha",
            "n_layers": 4,
            "d_model": 128,
            "n_heads": 4,
            "n_kv_heads": None,
        },
        "optim": {"lr": 0.003, "weight_decay": 0.1, "warmup_steps": 50},
        "train": {"batch_size": 16, "max_steps": 100},
        "loss": {"name": "ce", "z_loss_coef": 0.0},
        "data": {"name": "shakespeare_char", "cache_dir": f"/tmp/cache-{seed}"},
        "seed": seed,
        "out_dir": str(out_dir),
        "name": name,
        "logger": {"wandb": {"mode": "offline", "save_dir": str(out_dir)}},
        "trainer": {"threads": 2 + seed % 2, "precision": "32"},
    }


def loss_at(step: float, final: float, init: float) -> float:
    return final + (init - final) * math.exp(-step / 25)


def make_run(
    root: Path,
    name: str,
    *,
    seed: int = 0,
    final: float = 3.0,
    init: float = 4.2,
    status: str = "completed",
    overrides: dict | None = None,
    steps: int = 100,
    log_every: int = 10,
    val_every: int = 50,
    params: int = 800_000,
    tokens_per_sec: float = 10_000.0,
    flops: str = "lines",
    error: str | None = None,
    diverged_at: int | None = None,
) -> Path:
    """Write one run dir. ``overrides`` maps dotted keys to values (``{"model.mlp": "gelu"}``).

    ``flops``: "lines" logs cumulative flops per line, "summary" only sets
    ``summary.flops_per_token``, "none" gives neither.
    """
    run_dir = root / name
    run_dir.mkdir(parents=True)
    config = base_config(seed, name, run_dir)
    for key, value in (overrides or {}).items():
        node = config
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))

    last = diverged_at if status == "diverged" else (steps // 4 if status == "failed" else steps)
    tokens_per_step = config["train"]["batch_size"] * 64
    lines = []
    for step in range(0, last + 1, log_every):
        tokens = step * tokens_per_step
        line = {
            "step": step,
            "tokens": tokens,
            "time": tokens / tokens_per_sec,
            "train/loss": loss_at(step, final, init),
            "lr": config["optim"]["lr"],
            "attn/max_logit/layer0": 1.0,
        }
        if flops == "lines":
            line["flops"] = tokens * FLOPS_PER_TOKEN
        if status == "diverged" and step == last:
            line["train/loss"] = float("nan")
        lines.append(line)
        if step and step % val_every == 0 and status != "diverged":
            val = {k: line[k] for k in ("step", "tokens", "time", "flops") if k in line}
            lines.append(val | {"val/loss": loss_at(step, final, init)})
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))

    summary = {
        "status": status,
        "steps": last,
        "tokens": last * tokens_per_step,
        "val_loss": final if status == "completed" else None,
        "train_loss": final if status == "completed" else None,
        "params": params,
        "tokens_per_sec": tokens_per_sec,
        "seed": seed,
        "overrides": [f"{k}={v}" for k, v in (overrides or {}).items()] + [f"seed={seed}"],
        "wandb_dir": None,
        "diverged_at_step": diverged_at,
        "error": error,
        "flops_per_token": FLOPS_PER_TOKEN if flops != "none" else None,
        "elapsed_sec": last * tokens_per_step / tokens_per_sec,
        "choices": {},
    }
    (run_dir / "summary.json").write_text(json.dumps(summary))
    return run_dir


# Baseline (swiglu) and a clearly better arm (geglu) on seeds 0-2; the geglu arm also has a
# diverged seed 3, the swiglu arm a failed seed 3.
AB_BASE = {0: 3.00, 1: 3.03, 2: 2.98}
AB_BETTER = {0: 2.80, 1: 2.84, 2: 2.77}


def make_ab_sweep(root: Path) -> Path:
    sweep = root / "sweeps" / "mlp"
    for seed, final in AB_BASE.items():
        make_run(sweep, f"base_s{seed}", seed=seed, final=final)
    make_run(sweep, "base_s3", seed=3, status="failed", error="RuntimeError: out of memory")
    for seed, final in AB_BETTER.items():
        make_run(
            sweep,
            f"geglu_s{seed}",
            seed=seed,
            final=final,
            params=900_000,
            tokens_per_sec=8_000.0,
            overrides={"model.mlp": "geglu"},
        )
    make_run(
        sweep,
        "geglu_s3",
        seed=3,
        status="diverged",
        diverged_at=40,
        overrides={"model.mlp": "geglu"},
    )
    return sweep


# LR sweep: 4 LRs x 2 arms x 2 seeds; qk_norm=none diverges at the highest LR (both seeds).
LRS = [1e-3, 3e-3, 1e-2, 3e-2]
LR_FINALS = {
    "none": {1e-3: (3.40, 3.42), 3e-3: (3.10, 3.12), 1e-2: (3.30, 3.34), 3e-2: (None, None)},
    "layernorm": {1e-3: (3.38, 3.40), 3e-3: (3.08, 3.10), 1e-2: (3.05, 3.07), 3e-2: (3.20, 3.24)},
}


def make_lr_sweep(root: Path, init: float = 4.2) -> Path:
    sweep = root / "sweeps" / "qk_lr"
    for qk, by_lr in LR_FINALS.items():
        for lr, finals in by_lr.items():
            for seed, final in enumerate(finals):
                diverged = final is None
                make_run(
                    sweep,
                    f"qk{qk}_lr{lr:g}_s{seed}",
                    seed=seed,
                    init=init,
                    final=final if not diverged else 5.0,
                    status="diverged" if diverged else "completed",
                    diverged_at=30 if diverged else None,
                    overrides={"model.qk_norm": qk, "optim.lr": lr},
                )
    return sweep
