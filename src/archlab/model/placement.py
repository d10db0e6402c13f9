"""Knob ``model/norm_placement``: where the norm sits around each residual sublayer ``f``.

    pre   x + f(norm(x))      GPT-2, Llama: a clean residual path, stable (Xiong et al. 2020)
    post  norm(x + f(x))      the original Transformer (Vaswani et al. 2017)

A placement wraps one sublayer; ``final_norm`` says whether the stack ends with a norm
before the output head (pre-norm needs one; post-norm's output is already normalised).
"""

from __future__ import annotations

from torch import nn

from archlab.model.norm import make_norm


class Residual(nn.Module):
    final_norm = True

    def __init__(self, sublayer: nn.Module, cfg):
        super().__init__()
        self.f = sublayer
        self.norm = make_norm(cfg)


class PreNorm(Residual):
    def forward(self, x, **kw):
        return x + self.f(self.norm(x), **kw)


class PostNorm(Residual):
    final_norm = False

    def forward(self, x, **kw):
        return self.norm(x + self.f(x, **kw))


PLACEMENTS: dict[str, type[Residual]] = {"pre": PreNorm, "post": PostNorm}
