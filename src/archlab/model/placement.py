"""Knob ``model/norm_placement``: where the norms sit around each residual sublayer ``f``.

    pre        x + f(norm(x))              GPT-2, Llama: clean residual path (Xiong et al. 2020)
    post       norm(x + f(x))              the original Transformer (Vaswani et al. 2017)
    double     x + norm(f(norm(x)))        Gemma 2, Grok ("sandwich" / peri-norm)
    reordered  x + norm(f(x))              OLMo 2 (no norm on the sublayer input)
    none       x + f(x)                    the "remove the norm" ablation

A placement says which of three norm slots exist: ``norm_in`` on the sublayer input,
``norm_out`` on its output (both inside the residual branch) and ``norm_after`` on the sum.
``final_norm``: whether the stack ends with a norm before the head (post-norm's output is
already normalised; every other placement, ``none`` included, keeps the final norm).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from archlab.model.norm import make_norm


@dataclass(frozen=True)
class Placement:
    norm_in: bool
    norm_out: bool
    norm_after: bool
    final_norm: bool = True

    def check(self, m) -> None:
        """No rules of its own."""


PLACEMENTS: dict[str, Placement] = {
    "pre": Placement(norm_in=True, norm_out=False, norm_after=False),
    "post": Placement(norm_in=False, norm_out=False, norm_after=True, final_norm=False),
    "double": Placement(norm_in=True, norm_out=True, norm_after=False),
    "reordered": Placement(norm_in=False, norm_out=True, norm_after=False),
    "none": Placement(norm_in=False, norm_out=False, norm_after=False),
}


def norm_if(present: bool, cfg) -> nn.Module:
    return make_norm(cfg) if present else nn.Identity()
