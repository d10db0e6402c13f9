"""Compute budgets: ``train.budget=tokens:2e6 | flops:3e13 | seconds:600`` instead of steps.

Arms compared at equal steps are not compared at equal compute when they differ in FLOPs per
token or in speed. A budget fixes what every arm gets, and ``max_steps`` is derived from it
before training starts, so the LR schedule (warmup, cosine to its floor) is laid out over the
budget and every arm finishes its decay:

* ``tokens:N``  -> ``max_steps = N / (batch_size · block_size)``;
* ``flops:F``   -> ``max_steps = F / (train FLOPs per token · tokens per step)``;
* ``seconds:S`` -> a short probe times a few optimizer steps of this model on this machine,
  then ``max_steps = S / step time`` (fixed before the run: a slow neighbour does not move it).

The kind, the target and the amount achieved go into ``summary.json`` (``budget``).
"""

from __future__ import annotations

import time

from archlab.config import ArchlabConfig

PROBE_STEPS = 5


def parse(text: str) -> tuple[str, float]:
    kind, _, amount = str(text).partition(":")
    return kind.strip(), float(amount)


def probe_step_seconds(cfg: ArchlabConfig, steps: int = PROBE_STEPS) -> float:
    """Seconds per optimizer step of this model, timed after one warm-up step."""
    import torch

    from archlab.model import Transformer
    from archlab.train.optim import make_optimizer

    with torch.random.fork_rng():  # the probe must not move the run's RNG (init, data)
        return _timed_steps(cfg, steps, Transformer, make_optimizer)


def _timed_steps(cfg: ArchlabConfig, steps: int, Transformer, make_optimizer) -> float:
    import torch

    model = Transformer(cfg.model)
    opt = make_optimizer(model, cfg.optim, fused=False)
    shape = (cfg.train.batch_size, cfg.model.block_size)
    x = torch.randint(0, cfg.model.vocab_size, shape)
    loss_fn = torch.nn.functional.cross_entropy
    start = 0.0
    for i in range(steps + 1):
        if i == 1:
            start = time.perf_counter()
        logits = model(x)
        loss = loss_fn(logits.view(-1, logits.shape[-1]), x.view(-1))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return (time.perf_counter() - start) / steps


def steps_for(cfg: ArchlabConfig, flops_per_token: float, step_seconds=probe_step_seconds) -> int:
    kind, amount = parse(cfg.train.budget)
    tokens_per_step = cfg.train.batch_size * cfg.model.block_size
    if kind == "tokens":
        steps = amount / tokens_per_step
    elif kind == "flops":
        steps = amount / (flops_per_token * tokens_per_step)
    else:  # seconds
        steps = amount / step_seconds(cfg)
    return max(1, round(steps))


def apply(cfg: ArchlabConfig, flops_per_token: float) -> dict | None:
    """Derive ``cfg.train.max_steps`` from the budget (in place); the planned budget record."""
    if not cfg.train.budget:
        return None
    kind, amount = parse(cfg.train.budget)
    cfg.train.max_steps = steps_for(cfg, flops_per_token)
    return {"kind": kind, "target": amount, "max_steps": cfg.train.max_steps}


def achieved(planned: dict | None, max_steps: int, steps: int, tokens: int, fpt, seconds):
    """The budget record with the amount actually achieved (``fpt``: FLOPs per token)."""
    if planned is None:
        return {"kind": "steps", "target": max_steps, "achieved": steps}
    amount = {
        "tokens": tokens,
        "flops": tokens * (fpt or 0),
        "seconds": seconds,
    }[planned["kind"]]
    return {**planned, "achieved": amount}
