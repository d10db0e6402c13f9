"""Knob ``model/window``: which layers attend to a sliding window, and which see positions.

    full               every layer attends to the whole causal prefix
    sliding            every layer sees the last ``sliding_window`` tokens (Mistral)
    local_global       sliding layers, every ``global_every``-th layer full (Gemma 2: 2)
    local_global_nope  the same, and the full layers drop positions (Cohere 2 / Command A,
                       Llama 4: 3 local RoPE : 1 global NoPE, global_every=4)

A window of W lets query t see keys s with t − W < s ≤ t (itself included), as in
``transformers``' sliding-window mask.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from archlab.config import ConfigError
from archlab.model.position import POSITIONS


@dataclass(frozen=True)
class Layout:
    is_local: Callable[[int, object], bool]  # (layer index, cfg) → sliding window?
    global_nope: bool = False  # full layers attend without positions

    def check(self, m) -> None:
        """Interleaved layouts need a period >= 2; global NoPE layers need relative positions."""
        if self.global_nope and not POSITIONS[m.position].relative:
            raise ConfigError(
                f"model.window={m.window} removes positions from the global layers' attention,"
                f" but model.position={m.position} adds them to the embeddings once for all "
                "layers: use model/position=rope or alibi, or model/window=local_global"
            )
        if self.is_local is _interleaved and m.global_every < 2:
            raise ConfigError(
                f"model.window={m.window} needs model.global_every >= 2 (got {m.global_every}):"
                " with 1 every layer is global; use model/window=full"
            )


def _interleaved(i, cfg) -> bool:
    return (i + 1) % cfg.global_every != 0


WINDOWS: dict[str, Layout] = {
    "full": Layout(lambda i, cfg: False),
    "sliding": Layout(lambda i, cfg: True),
    "local_global": Layout(_interleaved),
    "local_global_nope": Layout(_interleaved, global_nope=True),
}


def layer_window(cfg, i: int) -> int | None:
    """The sliding window of layer i, or None for full attention."""
    return cfg.sliding_window if WINDOWS[cfg.window].is_local(i, cfg) else None


def layer_has_position(cfg, i: int) -> bool:
    layout = WINDOWS[cfg.window]
    return not (layout.global_nope and not layout.is_local(i, cfg))
