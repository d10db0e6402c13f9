"""``data=hf``: any Hugging Face dataset via ``datasets.load_dataset``.

Either a hub dataset (``data.dataset``, ``data.subset``, ``data.revision``) or local files
(``data.data_files``, optionally ``data.val_files``; the format comes from the extension:
txt / json / jsonl / parquet / csv). ``data.text_column`` names the text; ``data.streaming``
iterates instead of downloading whole; ``data.max_docs`` caps the documents read per split.

Splits: the source's own validation split is used when it has one (``data.val_split``, or
"validation" / "valid" / "val" when unset; ``data.val_files`` for local files); otherwise a
document goes to val when a hash of its bytes falls under ``data.val_fraction`` (stable,
order-free, duplicates land on the same side). With too few documents for that, the last
``val_fraction`` of the text is val.

``check()`` is cheap (stdlib only): local files exist, the column is in the first record of a
jsonl/csv file (parquet: its schema), and for a hub dataset the hub answers within a few
seconds (or, with ``HF_HUB_OFFLINE=1``, the dataset is in the local cache). An unreachable hub
fails at once with one line naming the offline alternative; ``datasets`` itself is imported
only when the corpus is actually loaded (once per token store).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import urllib.error
import urllib.request
from pathlib import Path

from archlab.config import ConfigError, DataConfig
from archlab.data.corpus import Corpus, find_files
from archlab.errors import describe, first_line

BUILDERS = {
    ".txt": "text",
    ".text": "text",
    ".md": "text",
    ".json": "json",
    ".jsonl": "json",
    ".parquet": "parquet",
    ".csv": "csv",
}
VAL_SPLITS = ("validation", "valid", "val")
HUB_TIMEOUT = float(os.environ.get("ARCHLAB_HUB_TIMEOUT", "5"))
_hub_ok: dict[str, None] = {}  # datasets already probed in this process (sweeps check each job)


def _label(cfg: DataConfig) -> str:
    return f"data={cfg.preset}" if cfg.preset else f"data=hf data.dataset={cfg.dataset}"


def _builder(files: list[str], key: str) -> str:
    kinds = {BUILDERS.get(Path(f).suffix.lower()) for f in files}
    if None in kinds or len(kinds) != 1:
        raise ConfigError(
            f"{key}: cannot tell the format of {', '.join(files[:3])}: use files of one kind "
            f"ending in {', '.join(sorted(BUILDERS))}"
        )
    return kinds.pop()


def _first_columns(path: str) -> list[str] | None:
    """The column names of a local file if cheaply knowable, else None."""
    suffix = Path(path).suffix.lower()
    try:
        if suffix in (".jsonl", ".json"):
            with open(path, encoding="utf-8", errors="replace") as f:
                for line in f:
                    line = line.strip()
                    if line:
                        if not line.startswith("{"):
                            return None  # a JSON array / pretty-printed: datasets will tell
                        try:
                            return list(json.loads(line))
                        except json.JSONDecodeError:
                            return None
            return []
        if suffix == ".csv":
            with open(path, newline="", encoding="utf-8", errors="replace") as f:
                return next(csv.reader(f), [])
        if suffix == ".parquet":
            import pyarrow.parquet as pq  # the hf extra: only for parquet files

            return list(pq.read_schema(path).names)
    except OSError:
        return None
    return None  # txt: one column, "text"


def _missing_column(cfg: DataConfig, columns, where: str) -> ConfigError:
    return ConfigError(
        f"data.text_column={cfg.text_column!r} is not a column of {where} (columns: "
        f"{', '.join(map(str, columns)) or 'none'}): set data.text_column=<one of them>"
    )


def _offline_error(cfg: DataConfig, why: str) -> ConfigError:
    alternative = (
        cfg.offline_alternative or "data=hf data.data_files=<local .txt/.jsonl/.parquet/.csv>"
    )
    cached = "" if _offline() else " (or set HF_HUB_OFFLINE=1 if it is already in your HF cache)"
    return ConfigError(
        f"{_label(cfg)} needs the Hugging Face hub (dataset {cfg.dataset}), which {why}: "
        f"offline, use {alternative}{cached}"
    )


def _offline() -> bool:
    return any(
        os.environ.get(v, "").lower() in ("1", "true", "yes", "on")
        for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    )


def _in_hf_cache(name: str) -> bool:
    hf_home = Path(os.path.expanduser(os.environ.get("HF_HOME", "~/.cache/huggingface")))
    hub = Path(os.environ.get("HF_HUB_CACHE", hf_home / "hub"))
    ds = Path(os.environ.get("HF_DATASETS_CACHE", hf_home / "datasets"))
    return (hub / f"datasets--{name.replace('/', '--')}").exists() or any(
        ds.glob(f"{name.replace('/', '___')}*")
    )


def _probe_hub(cfg: DataConfig) -> None:
    """Fail fast (seconds, not minutes of retries) when the hub cannot serve the dataset."""
    name = cfg.dataset
    if name in _hub_ok:
        return
    if _offline():
        if not _in_hf_cache(name):
            raise _offline_error(cfg, "is switched off (HF_HUB_OFFLINE) and it is not cached")
        _hub_ok[name] = None
        return
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    request = urllib.request.Request(f"{endpoint}/api/datasets/{name}")  # small JSON, unread
    if os.environ.get("HF_TOKEN"):
        request.add_header("Authorization", f"Bearer {os.environ['HF_TOKEN']}")
    try:
        urllib.request.urlopen(request, timeout=HUB_TIMEOUT).close()
    except urllib.error.HTTPError as e:
        if e.code in (401, 404):
            raise ConfigError(
                f"{_label(cfg)}: the Hugging Face hub has no dataset {name!r} (HTTP {e.code}; "
                "gated or private ones need HF_TOKEN): check data.dataset"
            ) from None
        if e.code >= 500:
            raise _offline_error(cfg, f"answered HTTP {e.code}") from None
        # other answers (rate limits …): the hub is there; datasets deals with it
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise _offline_error(cfg, f"is unreachable ({reason})") from None
    _hub_ok[name] = None


def _check_files(cfg: DataConfig, pattern: str, key: str) -> list[str]:
    """The files of ``pattern``: they exist, have one known format and the text column."""
    files = find_files(pattern, key)
    if _builder(files, key) == "text":
        if cfg.text_column != "text":
            raise _missing_column(cfg, ["text"], f"{files[0]} (a text file)")
        return files
    columns = _first_columns(files[0])
    if columns is not None and cfg.text_column not in columns:
        raise _missing_column(cfg, columns, files[0])
    return files


class HFSource:
    @staticmethod
    def check(cfg: DataConfig) -> None:
        if cfg.data_files:
            _check_files(cfg, cfg.data_files, "data.data_files")
            if cfg.val_files:
                _check_files(cfg, cfg.val_files, "data.val_files")
        elif cfg.dataset:
            _probe_hub(cfg)
        else:
            raise ConfigError(
                "data=hf needs data.dataset=<hub name> or data.data_files=<local file or glob>"
            )

    def __init__(self, cfg: DataConfig):
        self.cfg = cfg
        self.check(cfg)
        self.files = find_files(cfg.data_files, "data.data_files") if cfg.data_files else []
        self.val_files = find_files(cfg.val_files, "data.val_files") if cfg.val_files else []

    def fingerprint(self) -> str:
        c = self.cfg
        h = hashlib.sha256(b"hf\0")
        for part in (
            c.dataset,
            c.subset,
            c.revision,
            c.split,
            c.val_split,
            c.text_column,
            c.max_docs,
            c.val_fraction,
        ):
            h.update(f"{part}\0".encode())
        for split, files in (("train", self.files), ("val", self.val_files)):
            for f in files:
                h.update(f"{split}\0".encode())
                with open(f, "rb") as fh:
                    for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                        h.update(block)
        return h.hexdigest()[:16]

    def describe(self) -> str:
        c = self.cfg
        if self.files:
            return f"hf: {len(self.files)} local file(s) from {c.data_files}" + (
                f" (+ val {c.val_files})" if c.val_files else ""
            )
        return f"hf: {c.dataset}" + (f"/{c.subset}" if c.subset else "") + f" [{c.split}]"

    # ---------------------------------------------------------------- loading

    def _load_dict(self):
        """A dict split name -> (Iterable)Dataset, without fetching splits we do not read."""
        import datasets  # the hf extra (and ~1 s): only when this source loads

        datasets.disable_progress_bars()
        c = self.cfg
        if self.files:
            builder = _builder(self.files, "data.data_files")
            data_files = {c.split: self.files}
            if self.val_files:
                data_files["validation"] = self.val_files
            kwargs = {"sample_by": "document"} if builder == "text" else {}
            return datasets.load_dataset(
                builder, data_files=data_files, streaming=c.streaming, **kwargs
            )
        return datasets.load_dataset(
            c.dataset, c.subset, revision=c.revision, streaming=c.streaming
        )

    def _docs(self, ds, where: str) -> list[bytes]:
        c = self.cfg
        columns = ds.column_names
        if columns is None:  # streaming without known features: look at the first record
            first = next(iter(ds), None)
            columns = list(first) if first is not None else [c.text_column]
        if c.text_column not in columns:
            raise _missing_column(self.cfg, columns, where)
        ds = ds.select_columns([c.text_column])
        docs: list[bytes] = []
        for row in ds:
            if c.max_docs is not None and len(docs) >= c.max_docs:
                break
            text = row[c.text_column]
            if text is None or text == "":  # no document (e.g. wikitext's blank lines)
                continue
            docs.append((text if isinstance(text, str) else str(text)).encode("utf-8", "replace"))
        return docs

    def load(self) -> Corpus:
        c = self.cfg
        try:
            splits = self._load_dict()
        except ConfigError:
            raise
        except Exception as e:
            msg = first_line(e)
            if self.files:
                raise ConfigError(
                    f"data.data_files={c.data_files!r} could not be read by datasets "
                    f"({describe(e, 300)})"
                ) from None
            if _offline() or "connect" in msg.lower() or "offline" in msg.lower():
                raise _offline_error(c, f"could not serve it ({type(e).__name__})") from None
            raise ConfigError(
                f"{_label(c)}: datasets.load_dataset failed ({type(e).__name__}: {msg[:300]})"
            ) from None
        names = list(splits)
        if c.split not in splits:
            raise ConfigError(
                f"data.split={c.split!r} is not a split of {self.describe()} "
                f"(splits: {', '.join(names)}): set data.split=<one of them>"
            )
        val_name = c.val_split or next((s for s in VAL_SPLITS if s in splits), None)
        if c.val_split and c.val_split not in splits:
            raise ConfigError(
                f"data.val_split={c.val_split!r} is not a split of "
                f"{self.describe()} (splits: {', '.join(names)})"
            )
        where = ", ".join(self.files[:2]) if self.files else self.describe()
        train = self._docs(splits[c.split], where)
        if val_name is not None:
            return Corpus(
                train, self._docs(splits[val_name], f"the {val_name} split"), separate_docs=True
            )
        return split_documents(train, c.val_fraction)


def split_documents(docs: list[bytes], val_fraction: float) -> Corpus:
    """Deterministic train/val split of documents (no validation split in the source)."""
    train, val = [], []
    for d in docs:
        bucket = int.from_bytes(hashlib.sha256(d).digest()[:4], "big") / 2**32
        (val if bucket < val_fraction else train).append(d)
    if train and val:
        return Corpus(train, val, separate_docs=True)
    text = b"\n\n".join(docs)  # too few documents: the tail of the text is val
    cut = int(len(text) * (1 - val_fraction))
    return Corpus([text[:cut]], [text[cut:]], separate_docs=True)
