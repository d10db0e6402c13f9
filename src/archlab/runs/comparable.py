"""Which runs may be compared at all, and which have finished.

Per-token losses over different vocabularies, corpora or validation sets are different
quantities: arms that differ in the tokenizer, the data or the validation set are refused in
one line naming the difference (:func:`check_comparable`). Runs that did not finish
(``status: interrupted``, ``running`` …) are reported apart and never averaged in
(:func:`finished`).
"""

from __future__ import annotations

FINISHED = ("completed", "diverged")  # a divergence is a result; "failed" is counted apart
# what makes two runs' val losses the same quantity: the tokens and the corpus / validation set
# (not data.max_docs or data.single_epoch: a data-scaling sweep changes the training data only)
SAME_QUANTITY = ("tokenizer", "data_info.tokenizer") + tuple(
    f"data.{k}"
    for k in ("source", "path", "dataset", "subset", "revision", "data_files", "val_files",
              "val_split", "val_fraction", "val_windows", "text_column", "name")
)  # fmt: skip
IGNORED = ("tokenizer.path",)  # where a pretrained tokenizer is stored, not which


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


def _measured(run) -> dict:
    flat = _flat(run.config or {})
    return {
        k: v
        for k, v in flat.items()
        if any(k == s or k.startswith(s + ".") for s in SAME_QUANTITY) and k not in IGNORED
    }


def check_comparable(runs) -> None:
    """IncomparableError on the first key (tokenizer / data / validation) runs disagree on."""
    if not runs:
        return
    first = _measured(runs[0])
    for run in runs[1:]:
        other = _measured(run)
        for key in sorted(set(first) | set(other)):
            if first.get(key) != other.get(key):
                raise IncomparableError(
                    f"runs measure different things: {key}={first.get(key)!r} in "
                    f"{runs[0].source} but {other.get(key)!r} in {run.source} (per-token "
                    "losses over other tokens / data / validation sets are not comparable): "
                    "compare runs of one tokenizer and data set"
                )
