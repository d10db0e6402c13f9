"""Knob ``model/attention`` (MHA / GQA / MQA) and ``model/qk_norm``: causal self-attention.

GQA shares each key/value head among ``n_heads / n_kv_heads`` query heads (Ainslie et al.
2023); MQA is the limit of one kv head (Shazeer 2019). The plain causal case goes through
``F.scaled_dot_product_attention(is_causal=True)`` (fused kernels on GPU); an explicit mask is
built only when a sliding window (``model/window``), ALiBi or a KV cache needs one, and
soft-capped scores (``model.attn_softcap``, Gemma 2) need the explicit attention math.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from archlab.config import ConfigError, attn_bias, head_dim, n_kv_heads
from archlab.model import flex
from archlab.model.norm import make_qk_norm, qk_norm_params
from archlab.model.window import layer_window


def _mha(m) -> None:
    if m.n_kv_heads not in (None, m.n_heads):
        raise ConfigError(
            f"model.attention=mha uses n_kv_heads = n_heads, but model.n_kv_heads={m.n_kv_heads}"
            f" and model.n_heads={m.n_heads}: use model/attention=gqa, or drop model.n_kv_heads"
        )


def _gqa(m) -> None:
    kv = n_kv_heads(m)
    if m.n_heads % kv:
        raise ConfigError(
            f"model.n_kv_heads={kv} must divide model.n_heads={m.n_heads}: "
            f"choose n_kv_heads among the divisors of {m.n_heads}"
        )


def _mqa(m) -> None:
    if m.n_kv_heads != 1:
        raise ConfigError(
            f"model.attention=mqa needs model.n_kv_heads=1 (got {m.n_kv_heads}): "
            "use model/attention=gqa for more kv heads"
        )


@dataclass(frozen=True)
class AttentionKind:
    check: Callable  # validation of n_kv_heads against n_heads


ATTENTIONS = {"mha": AttentionKind(_mha), "gqa": AttentionKind(_gqa), "mqa": AttentionKind(_mqa)}


def softcap(x: torch.Tensor, cap: float | None) -> torch.Tensor:
    """cap · tanh(x / cap): smooth clipping to (−cap, cap) (Gemma 2)."""
    return x if cap is None else cap * torch.tanh(x / cap)


def expand_kv(t: torch.Tensor, n_heads: int) -> torch.Tensor:
    """(B, Hkv, S, hd) → (B, H, S, hd): each kv head serves H / Hkv query heads (explicit-math
    paths only; SDPA shares them without copies, ``enable_gqa``)."""
    return t if t.shape[1] == n_heads else t.repeat_interleave(n_heads // t.shape[1], dim=1)


def allowed(qpos, kpos, window: int | None) -> torch.Tensor:
    """(T, S) bool: query t may see key s (causal, and within the sliding window if any)."""
    dist = qpos[:, None] - kpos[None, :]  # (T, S): how far back key s is from query t
    ok = dist >= 0
    return ok if window is None else ok & (dist < window)


def score_bias(qpos, kpos, window: int | None, position) -> torch.Tensor:
    """Additive score mask (1 or H, T, S): −inf where causality / the window forbid, + ALiBi."""
    ok = allowed(qpos, kpos, window)
    mask = torch.zeros(ok.shape, device=ok.device).masked_fill(~ok, float("-inf"))
    alibi = position.bias(qpos[:, None] - kpos[None, :])
    return mask[None] if alibi is None else mask + alibi


class Attention(nn.Module):
    """Causal self-attention with one fused q/k/v projection: ``qkv`` has (H + 2·Hkv)·hd rows,
    the q heads, then the k heads, then the v heads (GPT-2's c_attn order, GQA/MQA-aware)."""

    def __init__(self, cfg, layer: int = 0):
        super().__init__()
        self.layer, self.window = layer, layer_window(cfg, layer)
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, n_kv_heads(cfg), head_dim(cfg)
        self.scale = cfg.attn_scale or 1 / math.sqrt(self.head_dim)
        self.softcap, self.dropout = cfg.attn_softcap, cfg.attn_dropout
        bias, hd = attn_bias(cfg), self.head_dim
        self.qkv = nn.Linear(cfg.d_model, (self.n_heads + 2 * self.n_kv_heads) * hd, bias=bias)
        self.proj = nn.Linear(self.n_heads * hd, cfg.d_model, bias=bias)
        self.proj.residual_out = True  # scaled init (see model/init.py)
        self.q_norm = make_qk_norm(cfg, self.n_heads, hd)  # None without model/qk_norm
        self.k_norm = make_qk_norm(cfg, self.n_kv_heads, hd)

    @staticmethod
    def n_params(cfg) -> int:
        """Parameters of one attention sublayer (projections, biases, q/k norm gains)."""
        d, hd, H, Hkv = cfg.d_model, head_dim(cfg), cfg.n_heads, n_kv_heads(cfg)
        proj = d * hd * (2 * H + 2 * Hkv) + attn_bias(cfg) * (hd * (H + 2 * Hkv) + d)
        return proj + qk_norm_params(cfg, H, hd) + qk_norm_params(cfg, Hkv, hd)

    def project(self, x: torch.Tensor, pos: torch.Tensor, position, cache=None):
        """q (B, H, T, hd) and keys/values (B, Hkv, S, hd), with the key positions (S,)."""
        B, T, _ = x.shape
        H, Hkv, hd = self.n_heads, self.n_kv_heads, self.head_dim
        qk, v = self.qkv(x).view(B, T, H + 2 * Hkv, hd).split((H + Hkv, Hkv), dim=2)
        if self.q_norm is not None:
            q, k = qk.split((H, Hkv), dim=2)
            qk = torch.cat([self.q_norm(q), self.k_norm(k)], dim=2)
        qk = position.rotate(qk, pos)  # queries and keys in one go: (B, T, H + Hkv, hd)
        q, k = qk.transpose(1, 2).split((H, Hkv), dim=1)  # (B, H, T, hd), (B, Hkv, T, hd)
        v = v.transpose(1, 2)
        kpos = pos
        if cache is not None:  # prepend the cached keys/values: (B, Hkv, S, hd), S ≥ T
            k, v, kpos = cache.update(self.layer, k, v, pos, self.window)
        return q, k, v, kpos

    def forward(self, x: torch.Tensor, pos: torch.Tensor, position, cache=None) -> torch.Tensor:
        B, T, _ = x.shape
        q, k, v, kpos = self.project(x, pos, position, cache)
        plain = self.window is None and k.shape[2] == T and not position.has_bias
        # one new token (KV-cache decode) may see every key the cache returns: the cache keeps
        # only the last window − 1 keys of a sliding layer, so no mask is needed
        one_query = T == 1 and not position.has_bias
        p_drop = self.dropout if self.training else 0.0
        use_flex = flex.wanted(q, self.window, position, self.softcap, p_drop, cache is None)
        skip = plain or one_query or use_flex  # flex: block mask + score mod, no (T, S) tensor
        mask = None if skip else score_bias(pos, kpos, self.window, position)
        if use_flex:  # CUDA only; the branches below are the reference (and the CPU path)
            y = flex.attend(q, k, v, self.window, position, self.scale, self.softcap)
        elif self.softcap is None:
            y = F.scaled_dot_product_attention(
                q,
                k,
                v,
                attn_mask=mask,
                is_causal=mask is None and not one_query,
                dropout_p=p_drop,
                scale=self.scale,
                enable_gqa=self.n_kv_heads != self.n_heads,  # kv heads shared, never copied
            )
        else:  # explicit math: scale → cap → mask → softmax (Gemma 2 order)
            k, v = expand_kv(k, self.n_heads), expand_kv(v, self.n_heads)
            scores = softcap((q @ k.transpose(-2, -1)) * self.scale, self.softcap)  # (B, H, T, S)
            if mask is None:
                mask = score_bias(pos, kpos, None, position)
            probs = F.dropout(torch.softmax((scores + mask).float(), dim=-1), p_drop).type_as(q)
            y = probs @ v
        return self.proj(y.transpose(1, 2).reshape(B, T, self.n_heads * self.head_dim))

    @torch.no_grad()
    def max_logit(self, x: torch.Tensor, pos: torch.Tensor, position) -> torch.Tensor:
        """Largest pre-softmax attention logit q·k·scale (before any soft-cap) over the
        positions each query may attend to: the quantity whose growth signals instability
        (Dehghani et al. 2023; Wortsman et al. 2023). Telemetry only; not on the training path."""
        q, k, _, kpos = self.project(x, pos, position)
        scores = (q @ expand_kv(k, self.n_heads).transpose(-2, -1)) * self.scale  # (B, H, T, S)
        return scores.masked_fill(~allowed(pos, kpos, self.window), float("-inf")).amax()
