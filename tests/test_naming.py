"""One function names a sweep job's folder (archlab.runs.naming): unique per job, readable,
hashed instead of cut, and the same for `archlab train -m`, the claims runner and the run
record."""

from __future__ import annotations

from archlab.runs.naming import MAX_DIRNAME, job_dirname, job_overrides, run_stamp


def test_short_names_are_the_readable_sorted_overrides():
    assert job_dirname(["seed=1", "model/mlp=gelu"]) == "model.mlp=gelu,seed=1"
    assert job_dirname([]) == "default"
    # where and how a job runs is not what it is: the same folder
    assert job_dirname(["seed=1", "name=x", "out_dir=/tmp/o", "resume=auto"]) == "seed=1"
    assert job_overrides(["+name=x", "seed=1", "~resume"]) == ["seed=1"]


def test_long_names_keep_a_readable_head_and_a_hash_tail_and_stay_unique():
    long = [f"model.knob_{i}=value_{i}" for i in range(20)]
    a, b = job_dirname([*long, "seed=0"]), job_dirname([*long, "seed=1"])
    assert a != b  # a 200-character cut would give both seeds one folder
    assert len(a.encode()) <= MAX_DIRNAME and len(b.encode()) <= MAX_DIRNAME
    assert a.startswith("model.knob_0=value_0,model.knob_10=value_10")  # sorted, readable
    assert job_dirname(list(reversed([*long, "seed=0"]))) == a  # order-free
    assert job_dirname([f"data.path=/{'é' * 150}"]) != job_dirname([f"data.path=/{'é' * 151}"])


def test_names_are_single_path_components():
    for overrides in (["data.path=../../x"], ["x=.."], ["a=b c"]):
        name = job_dirname(overrides)
        assert "/" not in name and " " not in name and name not in (".", "..")


def test_run_stamps_differ_within_one_second():
    stamps = {run_stamp() for _ in range(50)}
    assert len(stamps) == 50


def test_hydra_and_the_claims_runner_use_the_same_folders(tmp_path):
    """The folder Hydra gives a sweep job is the one job_dirname names (the claims runner and
    the re-run skip look there)."""
    from archlab.compose import Composer

    overrides = ["model/mlp=gelu", "seed=1", "name=s", f"out_dir={tmp_path}"]
    with Composer() as c:
        cfg = c.raw(overrides, hydra=True)
    assert cfg.hydra.sweep.subdir == job_dirname(overrides) == "model.mlp=gelu,seed=1"
