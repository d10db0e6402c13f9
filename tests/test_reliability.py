"""Issue #7: exact resume after SIGKILL, preemption signals, safe checkpoints, W&B / disk faults,
CLI config fuzzing, DDP on CPU. Everything that is about the CLI goes through the real CLI."""

from __future__ import annotations

import errno
import json
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from helpers import run_cli, tiny_config

# tiny, fast, checkpoint every 4 steps, log every 3: a checkpoint often falls mid-interval
BASE = [
    "model/size=tiny",
    "train.batch_size=8",
    "data.val_windows=8",
    "train.max_steps=24",
    "train.log_every=3",
    "train.val_every=6",
    "train.ckpt_every=4",
    "optim.warmup_steps=5",
    "logger=none",
]
WALL_CLOCK = {"time", "tokens_per_sec"}


def rows(run_dir: Path) -> list[dict]:
    return [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines()]


def comparable(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in WALL_CLOCK} for r in rows(run_dir)]


def series(run_dir: Path, key: str) -> list[tuple[int, float]]:
    return [(r["step"], r[key]) for r in rows(run_dir) if key in r]


def last_step(run_dir: Path) -> int:
    try:
        return max(
            (
                json.loads(ln)["step"]
                for ln in (run_dir / "metrics.jsonl").read_text().splitlines()
                if ln.endswith("}")
            ),
            default=0,
        )
    except (OSError, ValueError):
        return 0


# ----------------------------------------------------------------------------- resume


@pytest.fixture(scope="module")
def ref(tmp_path_factory) -> Path:
    """The uninterrupted reference run (also the source of a real checkpoint)."""
    root = tmp_path_factory.mktemp("ref")
    r = run_cli("train", *BASE, f"hydra.run.dir={root / 'run'}", f"out_dir={root}", cwd=root)
    assert r.returncode == 0, r.stderr[-3000:]
    return root / "run"


def test_sigkill_then_resume_equals_uninterrupted_run(tmp_path, ref):
    crash = tmp_path / "crash"
    # same config; the process SIGKILLs itself at the end of step 19 (ARCHLAB_FAULT,
    # train/inject.py: deterministic, no timing). Rows are logged every 3 steps, checkpoints
    # every 4: the latest checkpoint is step 16 and the step-18 row after it must be dropped.
    r = run_cli(
        "train",
        *BASE,
        f"hydra.run.dir={crash}",
        f"out_dir={tmp_path}",
        cwd=tmp_path,
        env={"ARCHLAB_FAULT": "SIGKILL@19:step"},
    )
    assert r.returncode == -signal.SIGKILL, r.stderr[-3000:]
    ckpt = crash / "checkpoints" / "last.ckpt"
    killed_at = last_step(crash)
    saved = torch.load(ckpt, weights_only=True)["global_step"]
    assert (saved, killed_at) == (16, 18)

    # resume through the CLI, by run dir (reads the run's own overrides)
    r = run_cli("train", f"resume={crash}", cwd=tmp_path)  # reads the run's own overrides
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads((crash / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == 24
    assert summary["resumed_from_step"] == saved

    # bit-for-bit: every logged value except wall-clock columns, every row, same order
    assert comparable(crash) == comparable(ref)
    assert series(crash, "train/loss") == series(ref, "train/loss")
    assert series(crash, "val/loss") == series(ref, "val/loss")
    assert len(series(ref, "train/loss")) == 9  # steps 1, 3, 6, …, 24
    assert summary["val_loss"] == json.loads((ref / "summary.json").read_text())["val_loss"]


@pytest.mark.slow
def test_sigterm_checkpoints_and_stops_then_resume_auto_continues(tmp_path):
    run = tmp_path / "run"
    args = [
        *BASE,
        "train.max_steps=200",
        "train.ckpt_every=1000",
        f"hydra.run.dir={run}",
        f"out_dir={tmp_path}",
    ]
    r = run_cli("train", *args, cwd=tmp_path, env={"ARCHLAB_FAULT": "SIGTERM@4:step"})
    err = r.stderr
    assert r.returncode == 128 + signal.SIGTERM, err[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "interrupted" and "SIGTERM" in summary["error"]
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == summary["steps"] == 4  # saved on the signal, not periodically
    assert "Traceback" not in err

    r = run_cli("train", *args, "train.max_steps=20", "resume=auto", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["resumed_from_step"] == ckpt["global_step"]
    steps = [s for s, _ in series(run, "train/loss")]
    assert steps == sorted(set(steps)) and steps[-1] == 20  # no duplicated rows


def test_checkpoint_is_plain_data_and_bad_files_give_one_line(tmp_path, ref):
    run = ref
    path = run / "checkpoints" / "last.ckpt"
    ckpt = torch.load(path, weights_only=True)  # no pickled code
    assert ckpt["format"] == "archlab-checkpoint" and ckpt["global_step"] == 24
    assert all(k.startswith("model.") for k in ckpt["state_dict"])
    assert ckpt["config"]["model"]["d_model"] == 64 and "data_info" in ckpt["config"]
    assert (run / "checkpoints" / "prev.ckpt").exists()  # the previous one is kept
    assert not list((run / "checkpoints").glob(".*tmp*"))  # no temp files left behind

    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"lr": 1}}, foreign)
    pickled = tmp_path / "pickled.ckpt"
    torch.save({"format": "archlab-checkpoint", "obj": Path("x")}, pickled)  # needs unpickling code
    cases = (
        (truncated, "cannot be loaded"),
        (foreign, "not an archlab checkpoint"),
        (pickled, "cannot be loaded"),
    )
    with ThreadPoolExecutor(2) as pool:
        results = list(
            pool.map(
                lambda c: run_cli(
                    "train", *BASE, f"resume={c[0]}", f"out_dir={tmp_path}/out", cwd=tmp_path
                ),
                cases,
            )
        )
    for (bad, words), r in zip(cases, results):
        assert r.returncode == 2, (bad, r.stderr[-2000:])
        assert not (tmp_path / "out").exists()
        err = r.stderr.strip()
        assert err.count("\n") == 0 and words in err and f"resume={bad}" in err, err
        assert "Traceback" not in err


# ----------------------------------------------------------------------------- faults


def tiny_cfg(**train):
    return tiny_config(**{"log_every": 2, "ckpt_every": 4, **train})


@pytest.mark.parametrize("where", ["checkpoint", "metrics"])
def test_disk_full_stops_cleanly_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, where):
    from archlab.train.checkpoint import DiskFullError
    from archlab.train.loggers import JsonlLogger
    from archlab.train.run import Job, train

    full = OSError(errno.ENOSPC, "No space left on device")
    if where == "checkpoint":  # the 2nd checkpoint (step 8) hits a full disk half-way
        real_save, calls = torch.save, []

        def save(obj, f, *a, **k):
            calls.append(1)
            if len(calls) == 2:
                f.write(b"PK\x03\x04 half a file")
                raise full
            return real_save(obj, f, *a, **k)

        monkeypatch.setattr(torch, "save", save)
    else:  # metrics.jsonl cannot grow after step 6
        real_log = JsonlLogger.log_metrics

        def log_metrics(self, metrics, step=None):
            if step > 6:
                full.filename = str(self.path)
                raise full
            return real_log(self, metrics, step)

        monkeypatch.setattr(JsonlLogger, "log_metrics", log_metrics)
    run = tmp_path / "run"
    with pytest.raises((DiskFullError, OSError)):
        train(tiny_cfg(), Job(run))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "failed" and "disk full (ENOSPC)" in summary["error"]
    assert "last good checkpoint" in summary["error"] and "last.ckpt" in summary["error"]
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 4
    assert not list((run / "checkpoints").glob(".*tmp*"))  # the half-written file is gone


def test_wandb_failing_mid_run_never_stops_training(tmp_path, monkeypatch, caplog):
    from lightning.pytorch.loggers import WandbLogger

    from archlab.train.run import Job, train

    real_log, calls = WandbLogger.log_metrics, []

    def flaky(self, metrics, step=None):
        calls.append(step)
        if len(calls) == 3:
            raise ConnectionError("wandb service went away")
        return real_log(self, metrics, step)

    monkeypatch.setattr(WandbLogger, "log_metrics", flaky)
    cfg = tiny_cfg()
    cfg.logger.kinds = ["wandb"]
    run = tmp_path / "run"
    with caplog.at_level("WARNING", logger="archlab"):
        summary = train(cfg, Job(run, overrides=["seed=0"], group="faults"))
    assert summary["status"] == "completed" and summary["steps"] == 12
    assert "wandb service went away" in summary["wandb_error"]
    assert len(calls) == 3  # disabled after the failure: no retry storm
    assert sum("W&B failed mid-run" in r.getMessage() for r in caplog.records) == 1
    train_rows = [r for r in rows(run) if "train/loss" in r]
    assert [r["step"] for r in train_rows] == [1, 2, 4, 6, 8, 10, 12]  # the record is complete
    from test_train_cli import wandb_summary

    info = wandb_summary(summary["wandb_dir"])
    assert info["state"] == "finished"


@pytest.mark.slow
def test_wandb_online_without_network_falls_back_to_offline_quickly(tmp_path):
    env = {
        "WANDB_MODE": "online",
        "WANDB_API_KEY": "f" * 40,
        "WANDB_BASE_URL": "http://127.0.0.1:9",
    }  # a closed local port: no network at all
    r = run_cli(
        "train",
        *BASE[:-1],
        "train.max_steps=3",
        "logger=wandb",
        "logger.mode=online",
        "logger.init_timeout=3",
        f"hydra.run.dir={tmp_path / 'run'}",
        f"out_dir={tmp_path}",
        cwd=tmp_path,
        env=env,
        timeout=180,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout + r.stderr
    assert out.count("W&B online init failed") == 1, out[-3000:]
    delay = float(out.split("W&B online init failed after ")[1].split(" s")[0])
    assert delay <= 15, delay
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "completed" and "offline-run-" in summary["wandb_dir"]
    print(f"W&B online→offline fallback after {delay:.1f} s")


# ----------------------------------------------------------------------------- config fuzzing

FUZZ = [
    (["model/normz=rmsnorm"], "model/normz"),  # unknown group
    (["model/norm=batchnorm"], "model/norm=batchnorm"),  # unknown option
    (["optimizer.lr=1e-3"], "optimizer"),  # unknown top-level key
    (["optim.learning_rate=1e-3"], "optim.learning_rate"),  # typos in keys
    (["+train.foo=1"], "train.foo"),
    (["optim.lr=fast"], "optim.lr"),  # wrong types
    (["train.batch_size=1.5"], "train.batch_size"),
    (["model.bias=maybe"], "model.bias"),
    (["seed=abc"], "seed"),
    (["train.max_steps=[1,2]"], "train.max_steps"),
    (["optim.lr=-1"], "optim.lr"),  # out of range
    (["optim.beta2=1.5"], "optim.beta2"),
    (["optim.min_lr_ratio=2"], "optim.min_lr_ratio"),
    (["train.batch_size=0"], "train.batch_size"),
    (["train.ckpt_every=-1"], "train.ckpt_every"),
    (["data.val_fraction=1.5"], "data.val_fraction"),
    (["trainer.threads=0"], "trainer.threads"),
    (["trainer.devices=0"], "trainer.devices"),
    (["trainer.devices=2", "train.batch_size=7"], "train.batch_size"),
    (["train.micro_batch_size=3"], "train.micro_batch_size"),  # 16 rows: not whole micro-batches
    (["trainer.accelerator=tpu"], "trainer.accelerator"),
    (["trainer=ddp", "trainer.strategy=ddp"], "trainer.strategy=ddp"),  # argv re-exec under Hydra
    (["logger.mode=sometimes"], "logger.mode"),
    (["model/mlp=gelu,swiglu"], "-m"),  # sweep syntax without -m
    (["-m", "seed=range(0,"], "seed"),  # broken sweep syntax
    (["-m", "model/mlp=gelu,swiglu", "model.n_heads=3,4"], "model.n_heads"),  # one bad sweep job
    (["seed=1=2"], "seed"),
    (["model.d_model=100", "model.n_heads=3"], "model.d_model"),  # conflicting knobs
    (["model/attention=gqa", "model.n_kv_heads=3"], "model.n_kv_heads"),
    (["loss.z_loss_coef=0.1"], "loss.z_loss_coef"),
    (["data=text", "data.path=/nonexistent/corpus.txt"], "data.path"),  # bad paths
    (["out_dir={tmp}/afile/sub"], "out_dir"),  # unwritable (under a regular file)
    (["hydra.run.dir={tmp}/afile/run"], "hydra.run.dir"),
    (["resume=/nonexistent/last.ckpt"], "resume"),  # resume of a missing checkpoint
    (["-m", "seed=0,1", "resume={tmp}"], "resume"),  # resume=<dir> in a sweep
]


@pytest.mark.slow  # 34 CLI start-ups (~2-4 min); .ci/run runs it with the slow reliability tests
def test_cli_fuzz_bad_overrides_exit_2_with_one_line_and_no_litter(tmp_path):
    assert len(FUZZ) >= 30
    (tmp_path / "afile").write_text("a regular file: nothing can be created under it\n")
    before = sorted(p.name for p in tmp_path.iterdir())

    def call(case):
        args = [a.replace("{tmp}", str(tmp_path)) for a in case[0]]
        if not any(a.startswith("out_dir=") for a in args):
            args.append(f"out_dir={tmp_path}/out")
        return run_cli("train", *args, cwd=tmp_path, timeout=120)

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(call, FUZZ))
    bad = []
    for (args, key), r in zip(FUZZ, results):
        err = r.stderr.strip()
        if not (
            r.returncode == 2
            and err.count("\n") == 0
            and key in err
            and err.startswith("archlab train: error:")
            and "Traceback" not in err
        ):
            bad.append((args, r.returncode, err[-500:]))
    assert not bad, bad
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no outputs/, no run dirs


# ----------------------------------------------------------------------------- DDP on CPU

DDP_RUN = [
    "model/size=tiny",
    "train.batch_size=8",
    "data.val_windows=8",
    "train.max_steps=10",
    "train.log_every=1",
    "train.val_every=5",
    "logger=none",
]


def test_ddp_two_processes_match_one_process_at_the_same_global_batch(tmp_path):
    def run(trainer):
        return run_cli(
            "train",
            *DDP_RUN,
            f"trainer={trainer}",
            f"hydra.run.dir={tmp_path / trainer}",
            f"out_dir={tmp_path}",
            cwd=tmp_path,
        )

    with ThreadPoolExecutor(2) as pool:
        one, two = pool.map(run, ["cpu", "ddp"])
    assert one.returncode == 0, one.stderr[-3000:]
    assert two.returncode == 0, two.stderr[-3000:]
    for key in ("train/loss", "val/loss", "grad_norm", "lr"):
        a, b = series(tmp_path / "cpu", key), series(tmp_path / "ddp", key)
        assert [s for s, _ in a] == [s for s, _ in b] and len(a) >= 2, key
        torch.testing.assert_close(
            torch.tensor([v for _, v in b]),
            torch.tensor([v for _, v in a]),
            rtol=1e-4,
            atol=1e-5,
            msg=key,
        )
    diff = max(
        abs(x - y)
        for (_, x), (_, y) in zip(
            series(tmp_path / "cpu", "train/loss"), series(tmp_path / "ddp", "train/loss")
        )
    )
    print(f"DDP (2 procs) vs 1 proc: max |train/loss diff| = {diff:.2e}")
    s1, s2 = (json.loads((tmp_path / t / "summary.json").read_text()) for t in ("cpu", "ddp"))
    assert s2["status"] == "completed" and s2["steps"] == s1["steps"] == 10
    assert s2["tokens"] == s1["tokens"]  # train.batch_size is the global batch
    assert (
        torch.load(tmp_path / "ddp" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
        == 10
    )


@pytest.mark.slow
def test_ddp_under_hydra_multirun(tmp_path):
    r = run_cli(
        "train",
        "-m",
        *DDP_RUN,
        "train.max_steps=4",
        "trainer=ddp",
        "seed=0,1",
        f"out_dir={tmp_path}",
        "name=ddp",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    summaries = [
        json.loads(p.read_text()) for p in (tmp_path / "sweeps" / "ddp").glob("*/summary.json")
    ]
    assert len(summaries) == 2 and all(s["status"] == "completed" for s in summaries)
    assert len(list((tmp_path / "sweeps").iterdir())) == 1  # no second sweep folder


@pytest.mark.slow
def test_preempted_sweep_stops_and_resume_auto_continues_it(tmp_path):
    args = [
        "-m",
        *BASE,
        "train.max_steps=12",  # the stop is injected at step 4: no time window needed
        "train.ckpt_every=1000",
        "seed=0,1",
        f"out_dir={tmp_path}",
        "name=pre",
    ]
    sweep = tmp_path / "sweeps" / "pre"

    def job(seed: int) -> Path | None:
        return next((d for d in sweep.glob("*") if f"seed={seed}" in d.name.split(",")), None)

    r = run_cli("train", *args, cwd=tmp_path, env={"ARCHLAB_FAULT": "SIGTERM@4:step"})
    assert r.returncode == 143, r.stderr[-3000:]
    assert json.loads((job(0) / "summary.json").read_text())["status"] == "interrupted"
    assert job(1) is None  # the sweep stopped: no new job after preemption

    r = run_cli("train", *args, "resume=auto", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    s0, s1 = (json.loads((job(i) / "summary.json").read_text()) for i in (0, 1))
    assert s0["status"] == s1["status"] == "completed"
    assert s0["resumed_from_step"] >= 4 and s1["resumed_from_step"] is None
    assert len([d for d in sweep.iterdir() if d.is_dir()]) == 2  # resume=auto: same job dirs


@pytest.mark.slow
def test_ddp_preempted_then_resumed_follows_the_one_process_curve(tmp_path):
    args = [*DDP_RUN, "train.max_steps=12", "train.ckpt_every=1000", f"out_dir={tmp_path}"]
    run = tmp_path / "ddp"
    # every rank signals itself after step 4 (ARCHLAB_FAULT): they stop together
    r = run_cli(
        "train",
        *args,
        "trainer=ddp",
        f"hydra.run.dir={run}",
        cwd=tmp_path,
        env={"ARCHLAB_FAULT": "SIGTERM@4:step"},
    )
    assert r.returncode == 143, r.stderr[-3000:]
    stopped = json.loads((run / "summary.json").read_text())
    assert stopped["status"] == "interrupted" and stopped["steps"] < 12
    assert (
        torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
        == stopped["steps"]
    )

    r = run_cli("train", *args, "trainer=ddp", f"hydra.run.dir={run}", "resume=auto", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    one = run_cli("train", *args, "trainer=cpu", f"hydra.run.dir={tmp_path / 'cpu'}", cwd=tmp_path)
    assert one.returncode == 0, one.stderr[-3000:]
    a, b = series(tmp_path / "cpu", "train/loss"), series(run, "train/loss")
    assert [s for s, _ in a] == [s for s, _ in b] == list(range(1, 13))
    torch.testing.assert_close(
        torch.tensor([v for _, v in b]), torch.tensor([v for _, v in a]), rtol=1e-4, atol=1e-5
    )
