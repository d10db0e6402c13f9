"""Which runs may be compared at all, in which unit, and which have finished.

Per-token losses over different vocabularies, corpora or validation sets are different
quantities: arms that differ in the data or the validation set are refused in one line naming
the difference (:func:`check_comparable`). Arms that differ only in the tokenizer are
compared in bits per byte (:func:`in_bits_per_byte`): a loss in nats per token × the
validation split's tokens per byte / ln 2, where every run's validation split is the same
text (the same ``data_info.val_bytes``). Runs that did not finish (``status: interrupted``,
``running`` …) are reported apart and never averaged in (:func:`finished`).
"""

from __future__ import annotations

import math
from dataclasses import replace

FINISHED = ("completed", "diverged")  # a divergence is a result; "failed" is counted apart
# what makes two runs' val losses the same quantity: the tokens and the corpus / validation set
# (not data.max_docs or data.single_epoch: a data-scaling sweep changes the training data only)
SAME_QUANTITY = ("tokenizer", "data_info.tokenizer") + tuple(
    f"data.{k}"
    for k in ("source", "path", "dataset", "subset", "revision", "data_files", "val_files",
              "val_split", "val_fraction", "val_windows", "text_column", "name")
)  # fmt: skip
IGNORED = ("tokenizer.path",)  # where a pretrained tokenizer is stored, not which
TOKENIZER = ("tokenizer", "data_info.tokenizer")  # bits per byte compares across these
# per-token losses (nats) in a run's summary and metric rows: scaled to bits per byte
LOSS_KEYS = ("val_loss", "train_loss", "val_loss_se", "val/loss", "train/loss", "val/loss_se")


class IncomparableError(ValueError):
    """Runs measure different quantities (one line names the first difference)."""


def finished(run) -> bool:
    return run.status in FINISHED


def unfinished(run) -> bool:
    return run.status not in (*FINISHED, "failed")


def _flat(d, prefix: str = "") -> dict:
    if not isinstance(d, dict):
        return {prefix.rstrip("."): d}
    out: dict = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}."))
    return out


def _measured(run, skip: tuple[str, ...] = ()) -> dict:
    flat = _flat(run.config or {})
    return {
        k: v
        for k, v in flat.items()
        if _under(k, SAME_QUANTITY) and k not in IGNORED and not _under(k, skip)
    }


def _under(key: str, prefixes: tuple[str, ...]) -> bool:
    return any(key == s or key.startswith(s + ".") for s in prefixes)


def first_difference(runs, skip: tuple[str, ...] = ()) -> str | None:
    """One line naming the first measured key two runs disagree on (None: they agree)."""
    if not runs:
        return None
    first = _measured(runs[0], skip)
    for run in runs[1:]:
        other = _measured(run, skip)
        for key in sorted(set(first) | set(other)):
            if first.get(key) != other.get(key):
                return (
                    f"{key}={first.get(key)!r} in {runs[0].source} but {other.get(key)!r} "
                    f"in {run.source}"
                )
    return None


def check_comparable(runs, across_tokenizers: bool = False) -> None:
    """IncomparableError on the first key (tokenizer / data / validation) runs disagree on;
    ``across_tokenizers``: the tokenizer may differ (the losses are then in bits per byte)."""
    difference = first_difference(runs, TOKENIZER if across_tokenizers else ())
    if difference:
        raise IncomparableError(
            f"runs measure different things: {difference} (per-token losses over other "
            "tokens / data / validation sets are not comparable): compare runs of one "
            "tokenizer and data set"
        )


def tokenizers_differ(runs) -> bool:
    return first_difference(runs) is not None and first_difference(runs, TOKENIZER) is None


def bits_per_token_factor(run) -> float | None:
    """bits per byte / nats per token for this run: its validation split's tokens per byte
    / ln 2 (None when the run records no byte count)."""
    info = (run.config or {}).get("data_info") or {}
    tokens, n_bytes = info.get("val_tokens"), info.get("val_bytes")
    if not isinstance(tokens, int) or not isinstance(n_bytes, int) or n_bytes <= 0:
        return None
    return tokens / n_bytes / math.log(2)


def in_bits_per_byte(runs) -> list:
    """The runs with every loss in bits per byte. IncomparableError if a run records no
    ``data_info.val_bytes`` or two runs' validation texts differ in size."""
    sizes = {}
    for run in runs:
        if bits_per_token_factor(run) is None:
            raise IncomparableError(
                f"runs measure different things: {first_difference(runs) or 'their units'}; "
                f"bits per byte would compare them, but {run.source} records no "
                "data_info.val_bytes (a token store built before archlab counted the bytes): "
                "re-run it, or compare runs of one tokenizer"
            )
        sizes.setdefault(run.config["data_info"]["val_bytes"], run.source)
    if len(sizes) > 1:
        (a, src_a), (b, src_b) = list(sizes.items())[:2]
        raise IncomparableError(
            f"bits per byte needs the same validation text, but it is {a:,} bytes in "
            f"{src_a} and {b:,} bytes in {src_b}: compare runs of one data set"
        )
    return [_scaled(run, bits_per_token_factor(run)) for run in runs]


def _scaled(run, factor: float):
    def scale(value):
        if isinstance(value, list):
            return [scale(v) for v in value]
        return value * factor if isinstance(value, (int, float)) and math.isfinite(value) else value

    def row(d: dict) -> dict:
        return {k: scale(v) if k in LOSS_KEYS else v for k, v in d.items()}

    summary = row(run.summary)
    if isinstance(summary.get("val_window_losses"), list):
        summary["val_window_losses"] = scale(summary["val_window_losses"])
    return replace(run, summary=summary, metrics=[row(m) for m in run.metrics])
