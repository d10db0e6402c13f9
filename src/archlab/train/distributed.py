"""Data parallelism with a fixed global batch.

``train.batch_size`` is the *global* batch: with N processes, rank r trains on rows r::N of the
step's batch (the batch of step i is a pure function of (seed, i), so no DistributedSampler is
involved and a resumed or re-sharded run sees the same data). DDP averages the gradients, so N
processes follow the 1-process run within float tolerance; logged losses are all-reduced means.
"""

from __future__ import annotations


def shard(batch, trainer):
    """This rank's rows of the step's global batch."""
    world = trainer.world_size if trainer is not None else 1
    if world == 1:
        return batch
    rank = trainer.global_rank
    return tuple(t[rank::world] for t in batch)


def mean_across_ranks(t, trainer):
    """All-reduced mean of a tensor (identity on one process). Every rank must call it."""
    if trainer is None or trainer.world_size == 1:
        return t
    return trainer.strategy.reduce(t, reduce_op="mean")
