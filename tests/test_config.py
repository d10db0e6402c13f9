"""Config composition and validation: bad input is one line naming the key, before training."""

from __future__ import annotations

import pytest

from archlab.cli import prevalidate
from archlab.config import ConfigError

BAD = [
    (["model.d_model=100", "model.n_heads=3"], "model.d_model=100"),
    (["model/attention=gqa", "model.n_kv_heads=3"], "model.n_kv_heads=3"),
    (["model/attention=mqa", "model.n_kv_heads=2"], "model.n_kv_heads=1"),
    (["model.n_kv_heads=2"], "model/attention=gqa"),
    (["model.d_model=36", "model.n_heads=4"], "is not a positive even number"),
    (["model/norm=batchnorm"], "model/norm=batchnorm is not an option; choose one of"),
    (["model/mlp=swish"], "model/mlp=swish"),
    (["model.n_layers=-2"], "model.n_layers=-2"),
    (["model.d_ff=0"], "model.d_ff=0"),
    (["model.n_heads=abc"], "model.n_heads=abc"),
    (["model.nlayers=2"], "model.nlayers is not a config key"),
    (["+model.foo=1"], "foo"),
    (["optim.lr=0"], "optim.lr=0"),
    (["train.max_steps=0"], "train.max_steps=0"),
    (["loss=z_loss", "loss.z_loss_coef=0"], "loss.z_loss_coef"),
    (["loss.z_loss_coef=0.1"], "loss=z_loss"),
    (["data=text"], "data.path"),
    (["data=text", "data.path=/does/not/exist.txt"], "data.path='/does/not/exist.txt'"),
    (["logger.kinds=[tensorflow]"], "logger.kinds='tensorflow'"),
    (["model/mlp=gelu,swiglu"], "add -m"),
]


@pytest.mark.parametrize("overrides,needle", BAD, ids=lambda v: str(v))
def test_bad_config_is_one_clear_line(overrides, needle):
    with pytest.raises(ConfigError) as err:
        prevalidate(overrides, multirun=False)
    message = str(err.value)
    assert "\n" not in message
    assert needle in message, message


def test_every_job_of_a_sweep_is_validated_up_front():
    assert prevalidate(["model/mlp=gelu,swiglu", "seed=0,1,2"], multirun=True) == 6
    with pytest.raises(ConfigError, match="model.n_kv_heads=3 must divide"):
        prevalidate(["model/attention=gqa", "model.n_kv_heads=2,3"], multirun=True)


def test_good_configs_compose():
    assert prevalidate([], multirun=False) == 1
    assert (
        prevalidate(
            [
                "model/norm=layernorm",
                "model/norm_placement=post",
                "model/mlp=gelu",
                "model/position=learned",
            ],
            multirun=False,
        )
        == 1
    )
    assert (
        prevalidate(
            [
                "model/attention=gqa",
                "model.n_kv_heads=2",
                "model/qk_norm=rmsnorm",
                "loss=z_loss",
                "loss.z_loss_coef=1e-4",
            ],
            multirun=False,
        )
        == 1
    )


def test_knobs_are_plain_values_in_the_resolved_config():
    from archlab.compose import compose

    cfg = compose(
        ["model/attention=gqa", "model.n_kv_heads=2", "model/qk_norm=layernorm", "loss=z_loss"]
    )
    assert (cfg.model.attention, cfg.model.n_kv_heads, cfg.model.qk_norm) == ("gqa", 2, "layernorm")
    assert (cfg.loss.name, cfg.loss.z_loss_coef) == ("z_loss", 1e-4)
    assert (cfg.model.norm, cfg.model.mlp, cfg.model.position) == ("rmsnorm", "swiglu", "rope")
