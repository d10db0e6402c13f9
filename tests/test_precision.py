"""Issue #19, precision: fp32 cross-entropy without fp32 logits, 16-mixed clipping, bf16 on CPU."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from archlab.config import ModelConfig, validate_model
from archlab.model import Transformer
from archlab.train.loss import (
    ChunkedCrossEntropy,
    cross_entropy,
    summed_cross_entropy,
    z_loss,
)


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
    assert torch.equal(
        summed_cross_entropy(logits, y), F.cross_entropy(flat, y.reshape(-1), reduction="sum")
    )


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
    torch.testing.assert_close(
        summed_cross_entropy(logits.detach(), y),
        F.cross_entropy(flat.detach(), y.reshape(-1), reduction="sum"),
        rtol=1e-6,
        atol=1e-4,
    )
