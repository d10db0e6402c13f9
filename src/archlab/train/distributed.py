"""Data parallelism with a fixed global batch, gradient accumulation, and who starts the ranks.

``train.batch_size`` is the *global* batch: with N processes, rank r trains on rows r::N of the
step's batch (the batch of step i is a pure function of (seed, i), so no DistributedSampler is
involved and a resumed or re-sharded run sees the same data). DDP averages the gradients, so N
processes follow the 1-process run within float tolerance; logged losses are all-reduced means.

Gradient accumulation: ``train.micro_batch_size`` rows per device per forward pass. A step's
batch is cut into ``accum = batch_size / (micro_batch_size · world)`` consecutive micro-batches
(:class:`MicroBatches`), each sharded across the ranks as above, and Lightning steps the
optimizer once per ``accum`` of them (``accumulate_grad_batches``), dividing each micro-batch
loss by ``accum``: the gradient is the mean over the whole global batch, as without accumulation.

Who starts the ranks (:func:`trainer_kwargs`), never by re-executing ``sys.argv`` (which breaks
Hydra):
- ``srun`` (``hydra/launcher=slurm`` with ``tasks_per_node = trainer.devices``): every SLURM task
  is one rank; Lightning's SLURM environment reads the rank from SLURM's variables and plain
  ``ddp`` starts no process.
- otherwise, several devices with ``trainer.strategy=auto``: Lightning starts the workers,
  ``ddp_spawn`` on GPUs (a fresh interpreter: no CUDA state crosses a fork), ``ddp_notebook``
  (fork) on CPU. Inside a SLURM allocation with one task, Lightning's SLURM environment would
  give every worker rank 0 (and one port): the local environment is passed instead.
"""

from __future__ import annotations

import os

from archlab.config import ConfigError

# kept light (torch and Lightning imported where used): the CLI's up-front checks import it

SPAWNING = ("ddp_spawn", "ddp_fork", "ddp_notebook")


# ----------------------------------------------------------------------------- sharding


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


class MicroBatches:
    """Item j of ``steps`` split in ``accum``: micro-batch j % accum of step j // accum's batch."""

    def __init__(self, steps, accum: int):
        self.steps, self.accum = steps, accum
        self._cached: tuple[int, tuple] | None = None  # the last step's whole batch

    def __len__(self) -> int:
        return len(self.steps)

    def __getitem__(self, j: int):
        step, m = divmod(j, self.accum)
        if self._cached is None or self._cached[0] != step:
            self._cached = (step, self.steps[step])
        rows = len(self._cached[1][0]) // self.accum
        return tuple(t[m * rows : (m + 1) * rows] for t in self._cached[1])


# ------------------------------------------------------------------------- world and ranks


def srun_tasks() -> int:
    """How many ranks ``srun`` started (1 outside SLURM, or in an interactive allocation)."""
    if os.environ.get("SLURM_JOB_NAME") in ("bash", "interactive"):
        return 1
    return int(os.environ.get("SLURM_NTASKS", "1"))


def launch_rank() -> int:
    """This process's rank when ``srun`` started the ranks (0 otherwise: spawned workers are
    started later, by Lightning): only rank 0 writes the run record."""
    return int(os.environ.get("SLURM_PROCID", "0")) if srun_tasks() > 1 else 0


def local_devices(cfg, on_gpu: bool) -> int | None:
    """Devices per node as a number (None: ``auto``/-1 on a machine without GPUs to count)."""
    d = cfg.trainer.devices
    if isinstance(d, (list, tuple)):
        return len(d)
    if isinstance(d, str) and d != "auto":
        ids = [i for i in d.split(",") if i.strip()]
        return len(ids) if "," in d else int(d)
    if d in ("auto", -1):
        import torch

        return torch.cuda.device_count() if on_gpu else 1
    return int(d)


def world_size(cfg, on_gpu: bool = False) -> int:
    if srun_tasks() > 1:
        return srun_tasks()
    return (local_devices(cfg, on_gpu) or 1) * cfg.trainer.num_nodes


def accumulation(cfg, world: int) -> int:
    """Micro-batches per optimizer step (1: none)."""
    micro = cfg.train.micro_batch_size
    return 1 if micro is None else cfg.train.batch_size // (micro * world)


def check(cfg, world: int | None = None) -> None:
    """Batch arithmetic and strategy (one line each); ``world`` None: from the config."""
    t = cfg.train
    world = world or _configured_world(cfg)
    if cfg.trainer.num_nodes < 1:
        raise ConfigError(f"trainer.num_nodes={cfg.trainer.num_nodes} must be >= 1")
    if t.micro_batch_size is not None:
        if t.micro_batch_size <= 0:
            raise ConfigError(f"train.micro_batch_size={t.micro_batch_size} must be positive")
        if t.batch_size % (t.micro_batch_size * world):
            raise ConfigError(
                f"train.batch_size={t.batch_size} (the global batch) must be a multiple of "
                f"train.micro_batch_size={t.micro_batch_size} × {world} devices: set "
                "train.micro_batch_size to a divisor of batch_size / devices"
            )
    elif t.batch_size % world:
        raise ConfigError(
            f"train.batch_size={t.batch_size} (the global batch) must be divisible by the "
            f"{world} devices (trainer.devices × trainer.num_nodes)"
        )


def _configured_world(cfg) -> int:
    d = cfg.trainer.devices
    n = 1 if d in ("auto", -1) else local_devices(cfg, on_gpu=False)
    return max(n or 1, 1) * max(cfg.trainer.num_nodes, 1)


def strategy_for(cfg, on_gpu: bool) -> tuple[str, list]:
    """(Lightning strategy, plugins) for this process: see the module docstring."""
    strategy = str(cfg.trainer.strategy)
    if srun_tasks() > 1:  # the ranks exist already: one per SLURM task
        if strategy.startswith(SPAWNING):
            raise ConfigError(
                f"trainer.strategy={strategy} under srun ({srun_tasks()} tasks) would start "
                "ranks twice: use trainer.strategy=auto (ddp, one rank per SLURM task)"
            )
        return ("ddp" if strategy == "auto" else strategy), []
    if cfg.trainer.num_nodes > 1:
        raise ConfigError(
            f"trainer.num_nodes={cfg.trainer.num_nodes} needs one process per device on every "
            "node, started by srun: use hydra/launcher=slurm (README: From laptop to cluster)"
        )
    devices = local_devices(cfg, on_gpu) or 1
    if devices > 1 and strategy == "auto":
        strategy = "ddp_spawn" if on_gpu else "ddp_notebook"
    plugins = []
    if strategy.startswith(SPAWNING) and "SLURM_NTASKS" in os.environ:
        from lightning.fabric.plugins.environments import LightningEnvironment

        plugins.append(LightningEnvironment())  # not SLURM's: it would make every worker rank 0
    return strategy, plugins


def trainer_kwargs(cfg, on_gpu: bool) -> dict:
    """The Trainer arguments for devices, nodes, strategy and accumulation."""
    strategy, plugins = strategy_for(cfg, on_gpu)
    world = world_size(cfg, on_gpu)
    check(cfg, world)
    return {
        "devices": cfg.trainer.devices,
        "num_nodes": cfg.trainer.num_nodes,
        "strategy": strategy,
        "plugins": plugins or None,
        "accumulate_grad_batches": accumulation(cfg, world),
    }


# ------------------------------------------------------------------------ per-rank setup


def cpu_threads(cfg, local_world: int) -> int:
    """``trainer.threads``, else the cores this process may run on shared by the local ranks."""
    if cfg.trainer.threads:
        return cfg.trainer.threads
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, cores // max(local_world, 1))


def configure_process(cfg, on_gpu: bool, local_world: int = 1) -> None:
    """What every rank's process needs (spawned workers start from a fresh interpreter):
    threads, and TF32 matmuls on GPU."""
    import torch

    torch.set_num_threads(cpu_threads(cfg, local_world))
    if on_gpu:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.set_float32_matmul_precision("high")


def seed_rank(seed: int, rank: int, step: int) -> None:
    """Ranks > 0 draw their own dropout masks (rank 0 keeps the stream the parent seeded or the
    checkpoint restored, so a 1-process run is unchanged; data order is global already)."""
    if rank > 0:
        import torch

        torch.manual_seed(hash((seed, rank, step)) % 2**63)
