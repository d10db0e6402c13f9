"""Issue #19: gradient accumulation, devices and strategies, per-rank setup, SLURM ranks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from archlab.config import ArchlabConfig, ConfigError
from archlab.train import distributed
from archlab.train.module import LitLM
from archlab.train.run import Job, train
from helpers import REPO, run_cli, tiny_config


def cfg_for(tmp_path: Path, **train_kw) -> ArchlabConfig:
    """The shared tiny run at a global batch of 16 for 8 steps, logging every step."""
    return tiny_config(
        **{"max_steps": 8, "log_every": 1, "val_every": 4, "batch_size": 16, **train_kw}
    )


def rows(run_dir: Path) -> list[dict]:
    """metrics.jsonl without the wall-clock fields."""
    out = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        r = json.loads(line)
        out.append({k: v for k, v in r.items() if k not in ("time", "tokens_per_sec")})
    return out


def series(run_dir: Path, key: str) -> list[tuple[int, float]]:
    return [(r["step"], r[key]) for r in rows(run_dir) if key in r]


# ------------------------------------------------------------------ gradient accumulation


def test_four_micro_batches_of_four_equal_one_batch_of_sixteen_resume_included(
    tmp_path, monkeypatch
):
    full = train(cfg_for(tmp_path), Job(tmp_path / "full"))
    acc = train(cfg_for(tmp_path, micro_batch_size=4), Job(tmp_path / "acc"))
    assert full["status"] == acc["status"] == "completed"
    # optimizer steps are what counts: steps, tokens, FLOPs, the LR schedule, the log steps
    assert acc["steps"] == full["steps"] == 8 and acc["tokens"] == full["tokens"]
    assert acc["micro_batches_per_step"] == 4 and full["micro_batches_per_step"] == 1
    for key in ("train/loss", "val/loss", "grad_norm", "lr", "tokens", "flops"):
        a, f = series(tmp_path / "acc", key), series(tmp_path / "full", key)
        assert [s for s, _ in a] == [s for s, _ in f] and len(a) >= 2, key
        torch.testing.assert_close(
            torch.tensor([v for _, v in a], dtype=torch.float64),
            torch.tensor([v for _, v in f], dtype=torch.float64),
            rtol=1e-4,
            atol=1e-6,
            msg=key,
        )

    # SIGTERM in the middle of step 6's accumulation: the run finishes that optimizer step,
    # checkpoints it and stops; resume=auto then continues exactly like the uninterrupted run
    step = LitLM.training_step

    def signalled(self, batch, batch_idx):
        if self.global_step == 5 and batch_idx % 4 == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        return step(self, batch, batch_idx)

    monkeypatch.setattr(LitLM, "training_step", signalled)
    with pytest.raises(SystemExit):
        train(cfg_for(tmp_path, micro_batch_size=4), Job(tmp_path / "cut"))
    cut = json.loads((tmp_path / "cut" / "summary.json").read_text())
    assert cut["status"] == "interrupted" and cut["steps"] == 6, cut
    monkeypatch.setattr(LitLM, "training_step", step)
    cfg = cfg_for(tmp_path, micro_batch_size=4)
    cfg.resume = "auto"
    resumed = train(cfg, Job(tmp_path / "cut"))
    assert resumed["status"] == "completed" and resumed["resumed_from_step"] == 6
    assert rows(tmp_path / "cut") == rows(tmp_path / "acc")  # bitwise: every logged value


def test_micro_batches_cover_each_step_batch_in_order():
    steps = [(torch.arange(16).reshape(16, 1) + 100 * s, torch.zeros(16, 1)) for s in range(3)]
    micro = distributed.MicroBatches(steps, 4)
    got = torch.cat([micro[j][0] for j in range(4, 8)])  # step 1's four micro-batches
    assert torch.equal(got, steps[1][0])


@pytest.mark.parametrize(
    "devices,nodes,micro,batch,words",
    [
        (2, 1, 3, 16, "train.micro_batch_size=3"),  # 16 % (3 × 2)
        (2, 2, None, 6, "train.batch_size=6"),  # 6 % 4 devices
        (1, 1, 0, 16, "train.micro_batch_size=0"),
        (1, 0, None, 16, "trainer.num_nodes=0"),
    ],
)
def test_batch_arithmetic_is_checked_with_one_line(tmp_path, devices, nodes, micro, batch, words):
    cfg = cfg_for(tmp_path, micro_batch_size=micro, batch_size=batch)
    cfg.trainer.devices, cfg.trainer.num_nodes = devices, nodes
    with pytest.raises(ConfigError, match=words.replace(".", r"\.")) as e:
        distributed.check(cfg)
    assert "\n" not in str(e.value)


def test_accumulation_counts_micro_batches_per_device():
    cfg = ArchlabConfig()
    cfg.train.batch_size, cfg.train.micro_batch_size = 512, 16
    assert distributed.accumulation(cfg, world=8) == 4  # 512 = 16 rows × 8 GPUs × 4
    cfg.train.micro_batch_size = None
    assert distributed.accumulation(cfg, world=8) == 1


# ------------------------------------------------------------------ devices and strategies

SLURM_TASK = {
    "SLURM_NTASKS": "2",
    "SLURM_NTASKS_PER_NODE": "2",
    "SLURM_PROCID": "1",
    "SLURM_LOCALID": "1",
    "SLURM_NODEID": "0",
    "SLURM_NNODES": "1",
    "SLURM_JOB_NAME": "archlab",
}


def test_strategy_never_reexecutes_argv(monkeypatch):
    for k in SLURM_TASK:
        monkeypatch.delenv(k, raising=False)
    cfg = ArchlabConfig()
    cfg.trainer.devices = 4
    assert distributed.strategy_for(cfg, on_gpu=True) == ("ddp_spawn", [])
    assert distributed.strategy_for(cfg, on_gpu=False) == ("ddp_notebook", [])
    cfg.trainer.devices = 1
    assert distributed.strategy_for(cfg, on_gpu=True) == ("auto", [])
    cfg.trainer.num_nodes = 2  # several nodes only with ranks started by srun
    with pytest.raises(ConfigError, match="hydra/launcher=slurm"):
        distributed.strategy_for(cfg, on_gpu=True)
    cfg.trainer.num_nodes = 1
    # one SLURM task (sbatch without srun per rank): Lightning's SLURM environment would give
    # every spawned worker rank 0; the local environment is passed instead
    monkeypatch.setenv("SLURM_NTASKS", "1")
    monkeypatch.setenv("SLURM_JOB_NAME", "archlab")
    cfg.trainer.devices = 4
    strategy, plugins = distributed.strategy_for(cfg, on_gpu=True)
    assert strategy == "ddp_spawn" and type(plugins[0]).__name__ == "LightningEnvironment"
    # srun started the ranks: plain ddp, no process started, SLURM's environment
    for k, v in SLURM_TASK.items():
        monkeypatch.setenv(k, v)
    cfg.trainer.devices = 2
    assert distributed.strategy_for(cfg, on_gpu=True) == ("ddp", [])
    assert distributed.launch_rank() == 1 and distributed.world_size(cfg) == 2
    cfg.trainer.strategy = "ddp_spawn"
    with pytest.raises(ConfigError, match="trainer.strategy=auto"):
        distributed.strategy_for(cfg, on_gpu=True)


def test_threads_follow_cpu_affinity(monkeypatch):
    cfg = ArchlabConfig()
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5})
    assert distributed.cpu_threads(cfg, local_world=1) == 6
    assert distributed.cpu_threads(cfg, local_world=2) == 3  # two ranks share the allowed cores
    assert distributed.cpu_threads(cfg, local_world=8) == 1
    cfg.trainer.threads = 2
    assert distributed.cpu_threads(cfg, local_world=1) == 2


def test_dropout_seeds_differ_per_rank_and_rank0_keeps_its_stream():
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    distributed.seed_rank(0, rank=0, step=0)
    assert torch.equal(torch.rand(3), expected)  # rank 0 (and 1-process runs) unchanged
    distributed.seed_rank(0, rank=1, step=0)
    r1 = torch.rand(3)
    distributed.seed_rank(0, rank=2, step=0)
    assert not torch.equal(r1, torch.rand(3)) and not torch.equal(r1, expected)
    distributed.seed_rank(0, rank=1, step=0)
    assert torch.equal(torch.rand(3), r1)  # reproducible


# ------------------------------------------------------------------ SLURM ranks (emulated)

SLURM_RUN = [
    "model/size=tiny",
    "train.batch_size=8",
    "data.val_windows=8",
    "train.max_steps=8",
    "train.log_every=1",
    "train.val_every=4",
    "logger=none",
    "trainer=cpu",
    "trainer.threads=1",
]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_srun_tasks_are_two_ranks_and_match_one_process(tmp_path):
    """What ``srun`` does under ``hydra/launcher=slurm`` with tasks_per_node=2: two processes
    run the same command with SLURM's variables; Lightning's SLURM environment makes them ranks
    0 and 1 of one DDP run (nothing re-executed, nothing spawned). With accumulation on top,
    the curve still equals the 1-process, full-batch run."""
    port = str(free_port())
    run_dir = tmp_path / "slurm"
    # and each rank accumulates 2 micro-batches of 2 rows: 8 = 2 rows × 2 ranks × 2
    args = ["train", *SLURM_RUN, "trainer.devices=2", "train.micro_batch_size=2"]
    args.append(f"hydra.run.dir={run_dir}")
    procs = []
    for rank in (0, 1):
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO / "src"),
            **SLURM_TASK,
            "SLURM_PROCID": str(rank),
            "SLURM_LOCALID": str(rank),
            "SLURM_JOB_ID": "4242",
            "SLURM_NODELIST": "127.0.0.1",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": port,
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "archlab", *args],
                cwd=tmp_path,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    one = run_cli("train", *SLURM_RUN, f"hydra.run.dir={tmp_path / 'one'}", cwd=tmp_path)
    outs = [p.communicate(timeout=300) for p in procs]
    assert one.returncode == 0, one.stderr[-3000:]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())  # written once, by rank 0
    assert summary["status"] == "completed" and summary["steps"] == 8
    assert summary["world_size"] == 2  # one DDP run of two ranks, not two 1-process runs
    assert summary["micro_batches_per_step"] == 2
    for key in ("train/loss", "val/loss", "grad_norm"):
        a, b = series(run_dir, key), series(tmp_path / "one", key)
        assert [s for s, _ in a] == [s for s, _ in b] and len(a) >= 2, key
        torch.testing.assert_close(
            torch.tensor([v for _, v in a]), torch.tensor([v for _, v in b]), rtol=1e-4, atol=1e-5
        )
    assert len(rows(run_dir)) == len(rows(tmp_path / "one"))  # rank 1 logged nothing


def test_gpt2_preset_sizes_the_readme_states():
    """README "From laptop to cluster": model/arch=gpt2 is 124.5M with GPT-2's tokenizer
    (vocab padded to 50,304) and 86.0M with the byte tokenizer."""
    from archlab.compose import compose
    from archlab.model.flops import param_count

    model = compose(["model/arch=gpt2"], check=False).model
    model.vocab_size = 50304  # tokenizer=pretrained (GPT-2's 50,257, padded to a multiple of 64)
    assert round(param_count(model) / 1e6, 1) == 124.5
    model.vocab_size = 256  # tokenizer=byte
    assert round(param_count(model) / 1e6, 1) == 86.0


@pytest.mark.slow
def test_spawned_workers_inside_a_one_task_slurm_allocation(tmp_path):
    """`sbatch` running `archlab train trainer=ddp` directly (one SLURM task): the workers
    Lightning starts must not take SLURM's rank (all 0, one port: EADDRINUSE before #19)."""
    env = {
        **{k: v for k, v in SLURM_TASK.items() if k not in ("SLURM_NTASKS_PER_NODE",)},
        "SLURM_NTASKS": "1",
        "SLURM_PROCID": "0",
        "SLURM_LOCALID": "0",
        "SLURM_JOB_ID": "4243",
        "SLURM_NODELIST": "127.0.0.1",
    }
    run_dir = tmp_path / "run"
    args = [a for a in SLURM_RUN if not a.startswith("trainer")]
    r = run_cli("train", *args, "trainer=ddp", f"hydra.run.dir={run_dir}", cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["world_size"] == 2
