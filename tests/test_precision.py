"""Issue #19, precision: fp32 cross-entropy without fp32 logits, 16-mixed clipping, bf16 on CPU."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from archlab.config import ModelConfig
from archlab.model import Transformer
from archlab.train.loss import (
    ChunkedCrossEntropy,
    cross_entropy,
    z_loss,
)
from archlab.validate import validate_model


def model_outputs(vocab=96, seed=0):
    """Real logits of a tiny model on random tokens, with the model to take gradients of."""
    torch.manual_seed(seed)
    cfg = ModelConfig(n_layers=2, d_model=32, n_heads=4, block_size=16, vocab_size=vocab)
    validate_model(cfg)
    model = Transformer(cfg)
    x = torch.randint(0, vocab, (6, 16))
    y = torch.randint(0, vocab, (6, 16))
    return model, x, y


def grads(model):
    return [p.grad.clone() for p in model.parameters()]


def test_fp32_losses_are_bitwise_the_plain_fp32_computation():
    """CPU fp32 runs keep their numerics (no NUMERICS_VERSION bump): the pre-#19 formulas."""
    model, x, y = model_outputs()
    logits = model(x)
    flat = logits.float().view(-1, logits.shape[-1])
    plain = F.cross_entropy(flat, y.reshape(-1))
    assert torch.equal(cross_entropy(logits, y)[0], plain)
    log_z = torch.logsumexp(flat, dim=-1)
    ce = (log_z - flat.gather(1, y.reshape(-1, 1)).squeeze(1)).mean()
    assert torch.equal(z_loss(logits, y, 1e-4)[0], ce + 1e-4 * log_z.pow(2).mean())


@pytest.mark.parametrize("chunk", [7, 32, 4096])  # uneven, even and single-chunk splits
def test_chunked_ce_and_z_loss_equal_plain_on_real_model_outputs(chunk):
    coef = 1e-2
    model, x, y = model_outputs()
    logits = model(x).reshape(-1, 96)
    log_z = torch.logsumexp(logits, -1)
    ref = F.cross_entropy(logits, y.reshape(-1)) + coef * log_z.pow(2).mean()
    ref.backward()
    ref_grads = grads(model)

    model.zero_grad()
    logits = model(x).reshape(-1, 96)
    ce, z2 = ChunkedCrossEntropy.apply(logits, y.reshape(-1), chunk)
    loss = ce + coef * z2
    loss.backward()
    torch.testing.assert_close(loss, ref, rtol=1e-6, atol=1e-6)
    for a, b in zip(grads(model), ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_bf16_logits_take_the_chunked_fp32_path_and_match_an_fp32_upcast():
    model, x, y = model_outputs()
    logits = model(x).detach().to(torch.bfloat16).requires_grad_()
    ce, parts = z_loss(logits, y, 1e-3)
    assert ce.dtype == torch.float32 and parts["ce"].dtype == torch.float32
    ce.backward()
    assert logits.grad.dtype == torch.bfloat16  # the gradient stays in the logits' precision

    up = logits.detach().float().requires_grad_()  # the old path: upcast the whole tensor
    flat = up.view(-1, up.shape[-1])
    log_z = torch.logsumexp(flat, -1)
    ref = F.cross_entropy(flat, y.reshape(-1)) + 1e-3 * log_z.pow(2).mean()
    ref.backward()
    torch.testing.assert_close(ce, ref, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(logits.grad.float(), up.grad, rtol=1e-2, atol=1e-5)


# ------------------------------------------------------------------ compiled evaluation


@pytest.mark.slow  # dynamo tracing: ~10 s alone, 40 s on a loaded machine
def test_compiled_forward_is_not_recompiled_per_eval_batch():
    from torch._dynamo.testing import CompileCounter

    from archlab.config import ArchlabConfig
    from archlab.train.module import LitLM

    cfg = ArchlabConfig()
    cfg.model = ModelConfig(n_layers=1, d_model=32, n_heads=4, block_size=16, vocab_size=64)
    cfg.train.batch_size = 4
    val = (torch.randint(0, 64, (10, 16)), torch.randint(0, 64, (10, 16)))  # batches 4, 4, 2
    lit = LitLM(cfg, val)
    counter = CompileCounter()
    torch._dynamo.reset()
    lit.__dict__["forward_fn"] = torch.compile(lit.model, backend=counter)
    lit.forward_fn(val[0][:4])  # the training shape
    compiled_for_training = counter.frame_count
    first = lit.evaluate()
    after_first_eval = counter.frame_count
    assert lit.evaluate() == first
    assert counter.frame_count == after_first_eval  # nothing new on the second evaluation
    # at most one more graph (eval mode), none for the short last batch (it runs eagerly)
    assert after_first_eval - compiled_for_training <= 1
    torch._dynamo.reset()


# ------------------------------------------------------------------ mixed precision


def test_16_mixed_clips_the_true_gradients_of_a_fused_optimizer():
    """Lightning leaves unscaling to optimizers that do it in their step (fused AdamW); the
    clipping hook must unscale first, or it clips (and logs) gradients × scale."""
    from archlab.train.module import clip_gradients

    def run(scaler):
        torch.manual_seed(0)
        net = torch.nn.Linear(8, 4)
        opt = torch.optim.AdamW(net.parameters(), lr=0.1, fused=True)
        loss = net(torch.randn(16, 8)).pow(2).mean() * 10
        (scaler.scale(loss) if scaler else loss).backward()
        norm = clip_gradients(net.parameters(), opt, 0.5, scaler)
        if scaler:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()
        return norm, [p.detach().clone() for p in net.parameters()]

    ref_norm, ref_params = run(None)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    norm, params = run(scaler)
    assert ref_norm > 0.5  # clipping is active
    torch.testing.assert_close(norm, ref_norm)  # the norm of the true gradients
    for a, b in zip(params, ref_params):  # one unscale: the step equals the fp32 step
        torch.testing.assert_close(a, b)


def test_bf16_mixed_on_cpu_trains_like_fp32(tmp_path):
    import json
    import os

    from archlab.config import ArchlabConfig
    from archlab.train.run import Job, train

    def cfg(precision):
        c = ArchlabConfig()
        c.model.n_layers, c.model.d_model, c.model.n_heads, c.model.block_size = 2, 32, 2, 32
        c.train.max_steps, c.train.log_every, c.train.val_every, c.train.batch_size = 6, 1, 3, 8
        c.train.telemetry_every = 3  # the telemetry forward runs under the same autocast
        c.data.val_windows, c.data.cache_dir = 4, os.environ["ARCHLAB_CACHE"]
        c.logger.kinds, c.trainer.accelerator, c.trainer.precision = [], "cpu", precision
        return c

    def series(run, key):
        rows = [
            json.loads(ln) for ln in (tmp_path / run / "metrics.jsonl").read_text().splitlines()
        ]
        return torch.tensor([r[key] for r in rows if key in r])

    assert train(cfg("32-true"), Job(tmp_path / "fp32"))["status"] == "completed"
    assert train(cfg("bf16-mixed"), Job(tmp_path / "bf16"))["status"] == "completed"
    for key in ("train/loss", "val/loss", "logits/mean_log_z"):
        a, b = series("bf16", key), series("fp32", key)
        assert len(a) == len(b) >= 2
        assert not torch.equal(a, b)  # bf16 really ran (autocast changes the numbers)
        torch.testing.assert_close(a, b, rtol=2e-2, atol=2e-2)  # bf16: 8 mantissa bits
