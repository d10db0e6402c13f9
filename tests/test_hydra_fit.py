"""Hydra the way Hydra users expect it: knob options under W&B-legal dotted names,
``experiment=`` / ``hparams_search=`` groups, a ``paths`` config, user paths relative to the
launch directory (also with ``hydra.job.chdir=true``), one install line for a missing extra,
``archlab --version``."""

from __future__ import annotations

import json
import textwrap

import pytest
import yaml

from helpers import REPO, TINY, TINYSHAKESPEARE, run_cli


def test_dotted_knob_names_select_the_whole_option():
    from archlab.compose import Composer

    with Composer() as c:
        dotted = c.compose(["model.attention=gqa", "model.mlp=gelu", "model.size=tiny", "name=a"])
        grouped = c.compose(["model/attention=gqa", "model/mlp=gelu", "model/size=tiny", "name=a"])
        plain = c.compose(["model.rope_theta=500000"])  # a value, not a group: set as it is
    assert dotted == grouped
    assert (dotted.model.attention, dotted.model.n_kv_heads) == ("gqa", 2)  # gqa.yaml's value
    assert (dotted.model.mlp, dotted.model.n_layers) == ("gelu", 2)
    assert plain.model.rope_theta == 500000 and plain.model.attention == "mha"


def test_experiment_hparams_search_paths_and_help_name():
    from archlab.compose import Composer

    with Composer() as c:
        smoke = c.compose(["experiment=smoke"])
        later_wins = c.compose(["experiment=smoke", "train.max_steps=7"])
        search = c.raw(["hparams_search=lr_optuna"], hydra=True)
    assert (smoke.name, smoke.model.n_layers, smoke.train.max_steps) == ("smoke", 2, 20)
    assert later_wins.train.max_steps == 7
    assert "optuna" in search.hydra.sweeper._target_.lower()
    assert set(search.hydra.sweeper.params) == {"optim.lr", "optim.warmup_steps"}
    assert search.hydra.help.app_name == "archlab"
    assert smoke.data.cache_dir == smoke.paths.cache_dir and smoke.paths.work_dir is None


BLOCKED = (
    "tensorboard",
    "hydra_plugins.hydra_optuna_sweeper",
    "hydra_plugins.hydra_submitit_launcher",
)


@pytest.mark.parametrize(
    ("args", "extra"),
    [
        (["logger=tensorboard"], "tensorboard"),
        (["-m", "hparams_search=lr_optuna"], "optuna"),
        (["-m", "hydra/launcher=slurm", "seed=0,1"], "cluster"),
    ],
)
def test_option_whose_extra_is_missing_fails_with_the_install_line(tmp_path, args, extra):
    site = tmp_path / "site"  # these packages look uninstalled to the child process
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import sys\n" + "".join(f"sys.modules[{m!r}] = None\n" for m in BLOCKED)
    )
    env = {"PYTHONPATH": f"{site}:{REPO / 'src'}"}
    r = run_cli("train", *args, f"out_dir={tmp_path / 'out'}", cwd=tmp_path, env=env)
    assert r.returncode == 2, r.stderr[-2000:]
    assert r.stderr.strip().count("\n") == 0 and "Traceback" not in r.stderr
    assert f'pip install "archlab[{extra}]"' in r.stderr
    assert not (tmp_path / "out").exists()


def test_relative_user_paths_resolve_against_the_launch_dir_under_chdir(tmp_path):
    if not TINYSHAKESPEARE.exists():
        pytest.skip("needs ../shared/data/tinyshakespeare.txt")
    (tmp_path / "corpus.txt").write_text(TINYSHAKESPEARE.read_text()[:120_000])
    r = run_cli(
        "train",
        *TINY,
        "train.max_steps=4",
        "logger=none",
        "data=text",
        "data.path=corpus.txt",
        "hydra.job.chdir=true",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "completed"
    config = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert config["data"]["path"] == str(tmp_path / "corpus.txt")
    assert config["paths"]["work_dir"] == str(tmp_path)


def test_version_and_python_dash_m(tmp_path):
    r = run_cli("--version", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.startswith("archlab "), r.stderr
    usage = run_cli("train", "--help", cwd=tmp_path)
    assert usage.returncode == 0 and "archlab is powered by Hydra" in usage.stdout
    assert "experiment" in usage.stdout and "hparams_search" in usage.stdout
    assert textwrap.dedent(usage.stdout).count("== Configuration groups ==") == 1
