"""Data pipeline: sources (stdlib/text/hf), tokenizers (byte/char/bpe/pretrained), token store,
epoch accounting, bad input. Two end-to-end ``archlab train`` runs at the bottom."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from archlab.config import ConfigError, DataConfig, TokenizerConfig
from archlab.data import store as store_mod
from archlab.data.corpus import split_documents
from archlab.data.hf import HFSource
from archlab.data.store import data_regime, load_tokens
from archlab.data.tokenizers import (
    BPETokenizer,
    check_checkpoint_vocab,
    load_run_tokenizer,
    make_tokenizer,
    padded_vocab,
)

REPO = Path(__file__).resolve().parents[1]
SHAKESPEARE = REPO.parent / "shared" / "data" / "tinyshakespeare.txt"
needs_shakespeare = pytest.mark.skipif(
    not SHAKESPEARE.exists(), reason="../shared/data/tinyshakespeare.txt not present"
)
HF_LIBS = ("datasets", "tokenizers", "transformers")


def _lexicon() -> list[str]:
    rng = np.random.default_rng(12345)
    syllables = [
        "ka",
        "lo",
        "mi",
        "ten",
        "sha",
        "ru",
        "vel",
        "dor",
        "qui",
        "an",
        "es",
        "ob",
        "pra",
        "tis",
        "ul",
        "gen",
        "fa",
        "rho",
        "zen",
        "wy",
    ]
    return ["".join(rng.choice(syllables, size=rng.integers(1, 5))) for _ in range(10000)]


LEXICON = _lexicon()


def words_text(n_words: int, seed: int = 0) -> str:
    """Deterministic pseudo-English: Zipf-distributed words built from syllables."""
    rng = np.random.default_rng(seed)
    lexicon = LEXICON
    ranks = np.minimum(rng.zipf(1.1, size=n_words), len(lexicon)) - 1
    words = [lexicon[r] for r in ranks]
    lines = [" ".join(words[i : i + 12]).capitalize() + "." for i in range(0, n_words, 12)]
    return "\n".join(lines) + "\n"


def write_jsonl(path: Path, docs: list[str], column: str = "text") -> Path:
    path.write_text("".join(json.dumps({"id": i, column: d}) + "\n" for i, d in enumerate(docs)))
    return path


def raw(tokens) -> bytes:
    """Byte-tokenizer ids back to the bytes they encode."""
    return np.asarray(tokens).astype(np.uint8).tobytes()


def hf_cfg(cache, **kw) -> DataConfig:
    return DataConfig(source="hf", cache_dir=str(cache), **kw)


def store_dirs(cache) -> list[str]:
    root = Path(cache) / "tokens"
    return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.exists() else []


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache"


@pytest.fixture(scope="session")
def mpl_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("mpl")  # one font cache for all CLI runs


@pytest.fixture(autouse=True)
def hf_env(tmp_path, monkeypatch, mpl_dir):
    for var, sub in (("HF_HOME", "hf"), ("HF_DATASETS_CACHE", "hfd"), ("WANDB_DIR", "wandb")):
        monkeypatch.setenv(var, str(tmp_path / sub))
    monkeypatch.setenv("MPLCONFIGDIR", str(mpl_dir))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


# ------------------------------------------------------------------ byte (default) path


def test_byte_path_is_unchanged_and_never_imports_hf_libraries(tmp_path):
    corpus = tmp_path / "a.txt"
    corpus.write_bytes(bytes(range(256)) * 40)
    code = f"""
import sys
from archlab.cli import prevalidate
from archlab.config import DataConfig
from archlab.data.store import load_tokens
assert prevalidate(["data=text", "data.path={corpus}"], False) == 1
d = load_tokens(DataConfig(source="text", path="{corpus}", val_fraction=0.1,
                           cache_dir="{tmp_path / "c"}"))
assert (d.train.astype("uint8").tobytes() + d.val.astype("uint8").tobytes()
        == open("{corpus}", "rb").read())
assert (d.vocab_size, d.model_vocab_size, d.train.dtype.name) == (256, 256, "uint8")
print(sorted(m for m in {HF_LIBS!r} if m in sys.modules))
"""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "ARCHLAB_CONF": str(REPO / "conf")}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------------ char


def test_char_vocab_comes_from_train_and_unseen_chars_become_unk(tmp_path, cache):
    f = tmp_path / "c.txt"
    f.write_text("abcab cab\n" * 50 + "xyz€")  # the tail (val) has 4 characters train lacks
    d = load_tokens(
        DataConfig(source="text", path=str(f), val_fraction=0.01, cache_dir=str(cache)),
        TokenizerConfig(name="char"),
    )
    tok = d.tokenizer
    assert tok.chars == ["\n", " ", "a", "b", "c"] and d.vocab_size == 6
    assert d.model_vocab_size == 64
    assert d.meta["unknown_tokens"] == 4 and list(d.val[-4:]) == [0, 0, 0, 0]
    assert tok.decode(d.train[:10]) == "abcab cab\n"
    assert d.info()["unknown_tokens"] == 4


def test_char_rejects_non_utf8_and_leaves_no_cache(tmp_path, cache):
    f = tmp_path / "latin1.txt"
    f.write_bytes("caf\u00e9 au lait\n".encode("latin-1") * 20)
    with pytest.raises(ConfigError, match=r"tokenizer=char needs UTF-8.*0xe9.*tokenizer=byte"):
        load_tokens(
            DataConfig(source="text", path=str(f), cache_dir=str(cache)),
            TokenizerConfig(name="char"),
        )
    assert store_dirs(cache) == []  # no store, no .build-* temp dir
    # the same file is fine with the byte tokenizer
    assert len(load_tokens(DataConfig(source="text", path=str(f), cache_dir=str(cache))).train)


# ------------------------------------------------------------------ bpe


def test_bpe_trains_to_vocab_size_deterministically_and_is_reused(tmp_path, monkeypatch):
    f = tmp_path / "w.txt"
    f.write_text(words_text(30000))
    data = DataConfig(source="text", path=str(f), val_fraction=0.05)
    tcfg = TokenizerConfig(name="bpe", vocab_size=1000)
    a = load_tokens(DataConfig(**{**data.__dict__, "cache_dir": str(tmp_path / "c1")}), tcfg)
    b = load_tokens(DataConfig(**{**data.__dict__, "cache_dir": str(tmp_path / "c2")}), tcfg)
    assert a.vocab_size == 1000 and a.model_vocab_size == 1024
    assert np.array_equal(a.train, b.train) and np.array_equal(a.val, b.val)
    assert (a.store_dir / "tokenizer.json").read_text() == (
        b.store_dir / "tokenizer.json"
    ).read_text()
    assert len(a.train) < 0.5 * f.stat().st_size  # it actually merges
    text = "Kalo mi tenrho."
    assert a.tokenizer.decode(a.tokenizer.encode(text)) == text
    # every other arm / seed reuses the store and its tokenizer: no retraining
    monkeypatch.setattr(BPETokenizer, "fit", lambda self, docs: pytest.fail("retrained"))
    c = load_tokens(DataConfig(**{**data.__dict__, "cache_dir": str(tmp_path / "c1")}), tcfg)
    assert np.array_equal(c.train, a.train) and c.tokenizer.vocab_size == 1000
    # other training params are another store
    load_tokens(
        DataConfig(**{**data.__dict__, "cache_dir": str(tmp_path / "c1")}),
        TokenizerConfig(name="byte"),
    )
    assert len(store_dirs(tmp_path / "c1")) == 2


def test_bpe_config_mistakes_are_one_line(tmp_path):
    with pytest.raises(ConfigError, match="tokenizer.vocab_size >= 258"):
        BPETokenizer.check(TokenizerConfig(name="bpe", vocab_size=100))
    with pytest.raises(ConfigError, match="only for tokenizer=bpe"):
        make_tokenizer(TokenizerConfig(name="char", vocab_size=100)).check(
            TokenizerConfig(name="char", vocab_size=100)
        )


# ------------------------------------------------------------------ pretrained


def test_pretrained_tokenizer_directory(tmp_path, cache):
    f = tmp_path / "w.txt"
    f.write_text(words_text(8000))
    bpe = make_tokenizer(TokenizerConfig(name="bpe", vocab_size=500))
    bpe.fit([f.read_bytes()])
    tok_dir = tmp_path / "my-tokenizer"
    tok_dir.mkdir()
    bpe.save(tok_dir)
    tcfg = TokenizerConfig(name="pretrained", path=str(tok_dir))
    d = load_tokens(DataConfig(source="text", path=str(f), cache_dir=str(cache)), tcfg)
    assert d.vocab_size == 500
    assert np.array_equal(np.asarray(d.train[:50]), bpe.encode(f.read_bytes())[:50])
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(f"tokenizer:\n  name: pretrained\n  path: {tok_dir}\n")
    d.save_tokenizer(run_dir)
    assert load_run_tokenizer(run_dir).decode(d.train[:20]) == bpe.decode(d.train[:20])
    from archlab.data.tokenizers import PretrainedTokenizer

    with pytest.raises(ConfigError, match="tokenizer.path=<a local Hugging Face tokenizer"):
        PretrainedTokenizer.check(TokenizerConfig(name="pretrained", path=str(tmp_path / "nope")))
    with pytest.raises(ConfigError, match="holds no tokenizer.json"):
        PretrainedTokenizer.check(TokenizerConfig(name="pretrained", path=str(tmp_path)))


def test_pretrained_slow_format_directory_via_transformers(tmp_path, cache):
    """A GPT-2-style directory (vocab.json + merges.txt + tokenizer_config.json)."""
    f = tmp_path / "w.txt"
    f.write_text(words_text(5000))
    bpe = make_tokenizer(TokenizerConfig(name="bpe", vocab_size=400))
    bpe.fit([f.read_bytes()])
    tok_dir = tmp_path / "gpt2-like"
    tok_dir.mkdir()
    bpe.tok.model.save(str(tok_dir))  # vocab.json + merges.txt
    (tok_dir / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "GPT2Tokenizer",
                "eos_token": "<|endoftext|>",
                "bos_token": "<|endoftext|>",
                "unk_token": "<|endoftext|>",
            }
        )
    )
    d = load_tokens(
        DataConfig(source="text", path=str(f), cache_dir=str(cache)),
        TokenizerConfig(name="pretrained", path=str(tok_dir)),
    )
    assert d.vocab_size == 400
    text = f.read_text()[:200]
    assert d.tokenizer.decode(d.tokenizer.encode(text)) == text
    assert list(d.tokenizer.encode(text)) == list(bpe.encode(text))


def test_vocab_padding_and_checkpoint_vocab_check():
    assert [padded_vocab(v) for v in (256, 66, 2048, 50257)] == [256, 128, 2048, 50304]
    check_checkpoint_vocab(50257, 50257, "gpt2")  # HF weights: unpadded
    check_checkpoint_vocab(128, 66, "run x")  # archlab weights: padded
    with pytest.raises(ConfigError, match="vocabulary of 256 tokens but the tokenizer has 2048"):
        check_checkpoint_vocab(256, 2048, "checkpoint last.ckpt")
    with pytest.raises(ConfigError, match="vocabulary of 4096"):
        check_checkpoint_vocab(4096, 2048, "checkpoint last.ckpt")


# ------------------------------------------------------------------ hf source (local files)


def _write_formats(tmp_path, docs):
    import pyarrow as pa
    import pyarrow.parquet as pq

    paths = {"jsonl": write_jsonl(tmp_path / "d.jsonl", docs, "body")}
    with open(tmp_path / "d.csv", "w", newline="") as fh:
        import csv

        w = csv.writer(fh)
        w.writerow(["id", "body"])
        w.writerows(enumerate(docs))
    paths["csv"] = tmp_path / "d.csv"
    pq.write_table(pa.table({"id": list(range(len(docs))), "body": docs}), tmp_path / "d.parquet")
    paths["parquet"] = tmp_path / "d.parquet"
    return paths


def test_hf_local_files_every_format_same_documents(tmp_path, cache):
    docs = [f"Document {i}: " + words_text(30, seed=i) for i in range(60)]
    paths = _write_formats(tmp_path, docs)
    seen = {}
    for kind, path in paths.items():
        d = load_tokens(hf_cfg(cache, data_files=str(path), text_column="body", val_fraction=0.2))
        seen[kind] = (raw(d.train), raw(d.val), d.meta["train_docs"], d.meta["val_docs"])
    assert seen["jsonl"] == seen["csv"] == seen["parquet"]
    streamed = load_tokens(
        hf_cfg(
            tmp_path / "other-cache",
            data_files=str(paths["parquet"]),
            text_column="body",
            val_fraction=0.2,
            streaming=True,
        )
    )
    assert (raw(streamed.train), raw(streamed.val)) == seen["jsonl"][:2]
    train, val, n_train, n_val = seen["jsonl"]
    assert n_train + n_val == 60 and n_val > 0  # hashed split: no validation split given
    assert train.startswith(docs[0].encode()) or val.startswith(docs[0].encode())
    # a txt file is one document (split by its tail)
    txt = tmp_path / "d.txt"
    txt.write_text("\n\n".join(docs))
    d = load_tokens(hf_cfg(cache, data_files=str(txt), val_fraction=0.1))
    assert raw(d.train) + raw(d.val) == txt.read_bytes()


def test_hf_validation_split_is_used_and_max_docs_caps(tmp_path, cache):
    train = write_jsonl(tmp_path / "train.jsonl", [f"train doc {i} " * 5 for i in range(40)])
    val = write_jsonl(tmp_path / "val.jsonl", [f"VALID {i} " * 5 for i in range(7)])
    d = load_tokens(hf_cfg(cache, data_files=str(train), val_files=str(val)))
    assert (d.meta["train_docs"], d.meta["val_docs"]) == (40, 7)
    assert b"VALID" not in raw(d.train) and b"train doc" not in raw(d.val)
    assert raw(d.val).count(b"\n\n") == 6  # documents separated
    capped = load_tokens(hf_cfg(cache, data_files=str(train), val_files=str(val), max_docs=10))
    assert capped.meta["train_docs"] == 10 and capped.store_dir != d.store_dir


def test_hashed_split_is_stable_and_order_free():
    docs = [f"doc {i}".encode() for i in range(500)]
    a, b = split_documents(docs, 0.1), split_documents(docs[::-1], 0.1)
    assert sorted(a.val) == sorted(b.val) and 25 < len(a.val) < 80
    assert not set(a.val) & set(a.train)
    one = split_documents([b"x" * 1000], 0.1)  # too few documents: the tail is val
    assert (len(one.train[0]), len(one.val[0])) == (900, 100)


@pytest.mark.parametrize("kind", ["jsonl", "csv", "parquet"])
def test_hf_missing_column_is_caught_up_front(tmp_path, kind):
    path = _write_formats(tmp_path, ["a", "b"])[kind]
    with pytest.raises(ConfigError, match=r"data.text_column='text' is not a column .*id, body"):
        HFSource.check(hf_cfg(tmp_path, data_files=str(path)))


def test_hf_bad_input_is_one_line_and_leaves_no_cache(tmp_path, cache):
    with pytest.raises(ConfigError, match="data.data_files=.*matches no file"):
        HFSource.check(hf_cfg(cache, data_files=str(tmp_path / "missing*.jsonl")))
    with pytest.raises(ConfigError, match="needs data.dataset=<hub name> or data.data_files"):
        HFSource.check(hf_cfg(cache))
    (tmp_path / "x.xml").write_text("<a/>")
    with pytest.raises(ConfigError, match="cannot tell the format"):
        HFSource.check(hf_cfg(cache, data_files=str(tmp_path / "x.xml")))
    empty = write_jsonl(tmp_path / "empty.jsonl", ["", ""])
    with pytest.raises(ConfigError, match="is empty"):
        load_tokens(hf_cfg(cache, data_files=str(empty)))
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "ok"}\n{"text": \n')
    with pytest.raises(ConfigError, match="could not be read by datasets"):
        load_tokens(hf_cfg(cache, data_files=str(broken)))
    assert store_dirs(cache) == []


def test_corpus_shorter_than_one_window(tmp_path, cache):
    from archlab.data.windows import TrainBatches

    f = tmp_path / "short.txt"
    f.write_text("too short " * 5)
    d = load_tokens(DataConfig(source="text", path=str(f), cache_dir=str(cache)))
    with pytest.raises(ConfigError, match="fewer than one window of model.block_size=64"):
        TrainBatches(d.train, 64, 4, 0)


def test_hub_preset_with_hub_offline_fails_at_once_naming_the_alternative(monkeypatch):
    cfg = DataConfig(
        source="hf",
        preset="tinyshakespeare",
        dataset="karpathy/tiny_shakespeare",
        offline_alternative="data=text data.path=../shared/data/tinyshakespeare.txt",
    )
    start = time.perf_counter()
    with pytest.raises(
        ConfigError,
        match=r"^data=tinyshakespeare needs the Hugging Face hub .* "
        r"offline, use data=text data.path=\.\./shared",
    ):
        HFSource.check(cfg)
    assert time.perf_counter() - start < 1


def test_hub_probe_against_a_local_fake_hub(monkeypatch):
    import http.server
    import threading

    from archlab.data import hf

    class FakeHub(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            code = {"/api/datasets/org/there": 200, "/api/datasets/org/down": 503}.get(
                self.path, 404
            )
            self.send_response(code)
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("HF_DATASETS_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setattr(hf, "_hub_ok", {})
    try:
        HFSource.check(DataConfig(source="hf", dataset="org/there"))
        with pytest.raises(ConfigError, match="the Hugging Face hub has no dataset 'org/typo'"):
            HFSource.check(DataConfig(source="hf", dataset="org/typo"))
        with pytest.raises(
            ConfigError, match=r"answered HTTP 503: offline, use data=hf data.data_files"
        ):
            HFSource.check(DataConfig(source="hf", dataset="org/down"))
    finally:
        server.shutdown()


# ------------------------------------------------------------------ token store


def _build_in_child(args):
    cfg, log = args
    real = store_mod._build

    def counting_build(*a, **kw):
        with open(log, "a") as fh:
            fh.write(f"{os.getpid()}\n")
        time.sleep(0.3)  # hold the lock long enough for the other job to ask too
        return real(*a, **kw)

    store_mod._build = counting_build
    d = load_tokens(cfg, TokenizerConfig(name="char"))
    return len(d.train), int(np.asarray(d.train[:1000], dtype=np.int64).sum())


def test_parallel_jobs_build_the_store_once(tmp_path, cache):
    f = tmp_path / "w.txt"
    f.write_text(words_text(20000))
    cfg = DataConfig(source="text", path=str(f), cache_dir=str(cache))
    log = tmp_path / "builds.log"
    with multiprocessing.get_context("fork").Pool(3) as pool:
        results = pool.map(_build_in_child, [(cfg, log)] * 3)
    assert len(set(results)) == 1
    assert len(log.read_text().split()) == 1  # one built, the others waited and reused it
    assert len(store_dirs(cache)) == 1


def test_epoch_accounting_and_single_epoch_warning(capsys):
    r = data_regime(
        train_tokens=10_000, max_steps=10, batch_size=4, block_size=64, single_epoch=True
    )
    assert r == {
        "train_tokens": 10_000,
        "planned_tokens": 2560,
        "planned_epochs": 0.256,
        "repeats_data": False,
    }
    assert capsys.readouterr().err == ""
    r = data_regime(
        train_tokens=10_000, max_steps=100, batch_size=4, block_size=64, single_epoch=True
    )
    assert r["repeats_data"] and r["planned_epochs"] == 2.56
    err = capsys.readouterr().err
    assert (
        err.count("\n") == 1 and "warning: data.single_epoch=true" in err and "2.56 epochs" in err
    )
    r = data_regime(
        train_tokens=10_000, max_steps=100, batch_size=4, block_size=64, single_epoch=False
    )
    assert r["repeats_data"] and capsys.readouterr().err == ""  # recorded, not warned


# ------------------------------------------------------------------ end to end (CLI)


def _cli(tmp_path, *args, extra_env=None, timeout=120):
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO / "src"),
        "ARCHLAB_CONF": str(REPO / "conf"),
        "ARCHLAB_CACHE": str(tmp_path / "cache"),
        "WANDB_MODE": "disabled",
        **(extra_env or {}),
    }
    env.pop("CI", None)
    return subprocess.run(
        [sys.executable, "-m", "archlab", "train", *args, f"out_dir={tmp_path / 'out'}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        check=False,
    )


# one thread: under CPU contention (parallel jobs) 2 OpenMP threads on 2 cores crawl
TINY = [
    "model/size=tiny",
    "train.max_steps=5",
    "train.val_every=5",
    "logger=none",
    "trainer.threads=1",
]


def _run_dir(tmp_path) -> Path:
    (run_dir,) = (tmp_path / "out" / "runs").iterdir()
    return run_dir


def test_hub_preset_fails_fast_when_the_hub_is_unreachable(tmp_path):
    # a closed local port stands in for "no network" (also on machines that have one)
    env = {"HF_HUB_OFFLINE": "", "HF_DATASETS_OFFLINE": "", "HF_ENDPOINT": "http://127.0.0.1:9"}
    start = time.perf_counter()
    out = _cli(tmp_path, "data=tinystories", *TINY, extra_env=env)
    assert time.perf_counter() - start < 20
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("archlab train: error: data=tinystories needs the Hugging Face hub")
    assert "unreachable" in lines[0] and "offline, use data=hf data.data_files=" in lines[0]
    assert not (tmp_path / "out").exists()


def test_e2e_hf_jsonl_with_bpe_2048(tmp_path):
    docs = [words_text(150, seed=i) for i in range(400)]
    corpus = write_jsonl(tmp_path / "corpus.jsonl", docs)
    out = _cli(
        tmp_path,
        "data=hf",
        f"data.data_files={corpus}",
        "tokenizer=bpe",
        "tokenizer.vocab_size=2048",
        *TINY,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    run_dir = _run_dir(tmp_path)
    summary = json.loads((run_dir / "summary.json").read_text())
    from omegaconf import OmegaConf

    config = OmegaConf.load(run_dir / "config.yaml")
    assert config.tokenizer.name == "bpe" and config.tokenizer.vocab_size == 2048
    assert config.data_info.tokenizer_vocab == 2048 and config.model.vocab_size == 2048
    assert summary["status"] == "completed" and summary["tokens"] == 5 * 16 * 64
    assert summary["train_tokens"] == config.data_info.train_tokens > 0
    assert summary["epochs"] == round(summary["tokens"] / summary["train_tokens"], 4)
    assert summary["repeats_data"] is False
    tok = load_run_tokenizer(run_dir)  # tokenizer.json was copied into the run dir
    assert tok.decode(tok.encode(docs[0])) == docs[0]


@needs_shakespeare
def test_e2e_text_tinyshakespeare_with_char(tmp_path):
    out = _cli(
        tmp_path,
        "data=text",
        "data.path=../shared/data/tinyshakespeare.txt",
        "tokenizer=char",
        "data.single_epoch=true",
        *TINY,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "warning" not in out.stderr  # 5 steps are far from one epoch
    run_dir = _run_dir(tmp_path)
    from omegaconf import OmegaConf

    config = OmegaConf.load(run_dir / "config.yaml")
    assert config.data_info.tokenizer_vocab == 66  # 65 characters + <unk>
    assert config.model.vocab_size == 128
    assert config.data_info.train_tokens + config.data_info.val_tokens == 1_115_394
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["train_tokens"] == 1_003_854 and 0 < summary["epochs"] < 0.01
    assert (run_dir / "char_vocab.json").exists()
