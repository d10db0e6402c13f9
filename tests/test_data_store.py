"""Token stores for large corpora (issue #17): streamed in batches, built by worker processes,
identical token for token to the stores built before, capped, and cached by content."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
from pathlib import Path

import numpy as np
import pytest

from archlab.config import ConfigError, DataConfig, TokenizerConfig
from archlab.data import corpus as corpus_mod
from archlab.data import store as store_mod
from archlab.data.sources import TextSource
from archlab.data.store import corpus_fingerprint, load_tokens
from archlab.data.tokenizers import BPETokenizer, ByteTokenizer
from data_corpora import tricky_text
from test_data import SHAKESPEARE, words_text, write_jsonl

REFERENCE = json.loads(
    (Path(__file__).parent / "fixtures" / "token_store_reference.json").read_text()
)
TOKENIZERS = {
    "byte": {"name": "byte"},
    "char": {"name": "char"},
    "bpe512": {"name": "bpe", "vocab_size": 512},
}


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


@pytest.fixture
def small_batches(monkeypatch):
    """Pieces of ~3 kB and batches of ~30 kB: small corpora take the multi-worker path."""
    monkeypatch.setattr(corpus_mod, "PIECE_BYTES", 3000)
    monkeypatch.setattr(store_mod, "BATCH_BYTES", 30000)


def _digest(a) -> list:
    return [len(a), hashlib.sha256(np.asarray(a, dtype=np.int64).tobytes()).hexdigest()[:20]]


def _corpus(tmp_path: Path, name: str) -> dict:
    if name == "tricky_text":
        (tmp_path / "t1.txt").write_text(tricky_text(3000, 1), newline="")
        (tmp_path / "t2.txt").write_text(tricky_text(2000, 2), newline="")
        return {"source": "text", "path": str(tmp_path / "t*.txt"), "val_fraction": 0.1}
    if name == "jsonl":
        docs = [words_text(60, seed=i) + tricky_text(5, i) for i in range(300)]
        return {"source": "hf", "data_files": str(write_jsonl(tmp_path / "docs.jsonl", docs))}
    if not SHAKESPEARE.exists():
        pytest.skip("../shared/data/tinyshakespeare.txt not present")
    return {"source": "text", "path": str(SHAKESPEARE), "val_fraction": 0.1}


@pytest.mark.parametrize(
    "corpus,tok",
    [
        ("tricky_text", "byte"),
        ("tricky_text", "char"),
        ("tricky_text", "bpe512"),
        pytest.param("jsonl", "char", marks=pytest.mark.slow),
        ("jsonl", "bpe512"),
        pytest.param("shakespeare", "byte", marks=pytest.mark.slow),
        pytest.param("shakespeare", "bpe512", marks=pytest.mark.slow),
    ],
)
def test_streamed_store_is_token_for_token_the_pre_17_store(tmp_path, small_batches, corpus, tok):
    """Files cut into pieces, batches encoded by two worker processes: the same tokens as the
    store the code before #17 built from whole files (fixture made with that code)."""
    cfg = DataConfig(cache_dir=str(tmp_path / "c"), workers=2, **_corpus(tmp_path, corpus))
    d = load_tokens(cfg, TokenizerConfig(**TOKENIZERS[tok]))
    assert d.meta["workers"] == 2 and d.meta["train_docs"] > 10  # really cut and pooled
    ref = REFERENCE["stores"][f"{corpus}/{tok}"]
    if tok == "bpe512":
        import tokenizers

        if tokenizers.__version__ != REFERENCE["tokenizers"]:
            pytest.skip(f"fixture made with tokenizers {REFERENCE['tokenizers']}")
        tokenizer_json = (d.store_dir / "tokenizer.json").read_bytes()
        assert hashlib.sha256(tokenizer_json).hexdigest()[:20] == ref["tokenizer_json"]
    assert [_digest(d.train), _digest(d.val), d.vocab_size] == [
        ref["train"],
        ref["val"],
        ref["vocab"],
    ]


def test_bpe_on_pieces_equals_bpe_on_the_whole_file(tmp_path, small_batches):
    """Independent of the fixture: the same merges as training on the whole training text,
    and the same ids as encoding it in one call."""
    cfg = DataConfig(cache_dir=str(tmp_path / "c"), workers=2, **_corpus(tmp_path, "tricky_text"))
    d = load_tokens(cfg, TokenizerConfig(name="bpe", vocab_size=400))
    whole = []
    for f in TextSource(cfg).files:
        text = Path(f).read_bytes()
        whole.append(text[: int(len(text) * 0.9)])
    reference = BPETokenizer(TokenizerConfig(name="bpe", vocab_size=400))
    reference.fit(whole)
    assert reference.tok.to_str() == d.tokenizer.tok.to_str()
    ids = np.concatenate([reference.encode(t) for t in whole])
    assert np.array_equal(ids, np.asarray(d.train, dtype=np.int64))


def test_cut_points_tokenise_like_the_whole_text():
    # lone line ends between visible characters first, else a space before a letter
    assert corpus_mod._last_cut(b"ab\ncd\n\nef") == 3
    assert corpus_mod._last_cut(b"ab\r\ncd\r\nef gh") == 10
    assert corpus_mod._last_cut(b"ab \ncd\n ef") == 0


def test_memory_is_bounded_by_the_batch_not_the_corpus(tmp_path, small_batches, monkeypatch):
    """A one-file corpus 60x the batch size is never handed to the tokenizer whole."""
    f = tmp_path / "big.txt"
    f.write_text(words_text(300_000))
    assert f.stat().st_size > 60 * store_mod.BATCH_BYTES
    largest = []
    real = store_mod._encode_docs

    def spy(tokenizer, docs, *a):
        largest.append(sum(map(len, docs)))
        return real(tokenizer, docs, *a)

    monkeypatch.setattr(store_mod, "_encode_docs", spy)
    d = load_tokens(
        DataConfig(source="text", path=str(f), cache_dir=str(tmp_path / "c"), workers=1)
    )
    assert len(largest) > 60
    assert max(largest) <= store_mod.BATCH_BYTES + 2 * corpus_mod.PIECE_BYTES
    assert d.train.dtype == np.uint8 and raw_equal(d, f)


def raw_equal(d, f: Path) -> bool:
    data = f.read_bytes()
    return bytes(d.train) + bytes(d.val) == data


@pytest.mark.parametrize("tok", ["byte", "bpe512"])
def test_a_document_bigger_than_a_shared_slot_gives_the_same_tokens(tmp_path, small_batches, tok):
    """Batches travel to the workers through fixed shared slots; one that does not fit (a huge
    document) goes by pickle: the pooled store equals the one built in one process."""
    docs = [words_text(40, seed=i) for i in range(120)]
    docs[50] = words_text(40_000, seed=99)  # ~250 kB: more than a 60 kB input slot
    files = {"source": "hf", "data_files": str(write_jsonl(tmp_path / "d.jsonl", docs))}
    built = [
        load_tokens(
            DataConfig(**files, cache_dir=str(tmp_path / f"c{w}"), workers=w),
            TokenizerConfig(**TOKENIZERS[tok]),
        )
        for w in (1, 2)
    ]
    assert [d.meta["workers"] for d in built] == [1, 2]
    assert len(docs[50]) > 2 * store_mod.BATCH_BYTES
    for split in ("train", "val"):
        assert np.array_equal(getattr(built[0], split), getattr(built[1], split))


def test_max_tokens_takes_the_first_tokens_of_the_training_split(tmp_path):
    f = tmp_path / "w.txt"
    f.write_text(words_text(20000))
    base = {"source": "text", "path": str(f), "cache_dir": str(tmp_path / "c")}
    full = load_tokens(DataConfig(**base))
    capped = load_tokens(DataConfig(**base, max_tokens=5000))
    assert np.array_equal(capped.train, full.train[:5000])
    assert np.array_equal(capped.val, full.val)  # data=text: val is still each file's tail
    assert capped.store_dir != full.store_dir and capped.meta["max_tokens"] == 5000
    # a hashed hf split (val documents among the train ones): val gets its share of the cap,
    # in order, and reading stops there
    docs = [words_text(50, seed=i) for i in range(200)]
    hf = {"source": "hf", "data_files": str(write_jsonl(tmp_path / "d.jsonl", docs))}
    hf_full = load_tokens(DataConfig(**hf, cache_dir=str(tmp_path / "c")))
    hf_capped = load_tokens(DataConfig(**hf, cache_dir=str(tmp_path / "c"), max_tokens=3000))
    assert np.array_equal(hf_capped.train, hf_full.train[:3000])
    share = int(np.ceil(3000 * 0.02 / 0.98))
    assert len(hf_capped.val) == share < len(hf_full.val)
    assert np.array_equal(hf_capped.val, hf_full.val[: len(hf_capped.val)])


def test_hf_streamed_and_arrow_backed_give_the_same_store_tokens(tmp_path, small_batches):
    docs = [words_text(40, seed=i) for i in range(150)]
    files = str(write_jsonl(tmp_path / "d.jsonl", docs))
    stores = [
        load_tokens(
            DataConfig(
                source="hf",
                data_files=files,
                streaming=streaming,
                workers=2,
                cache_dir=str(tmp_path / f"c{streaming}"),
            )
        )
        for streaming in (False, True)
    ]
    assert np.array_equal(stores[0].train, stores[1].train)
    assert np.array_equal(stores[0].val, stores[1].val) and len(stores[0].val) > 0
    assert stores[0].meta["train_docs"] + stores[0].meta["val_docs"] == len(docs)


def test_bpe_sample_bytes_trains_on_the_first_bytes_only(tmp_path, small_batches, monkeypatch):
    f = tmp_path / "w.txt"
    f.write_text(words_text(40000))
    seen = []
    real_fit = BPETokenizer.fit

    def counting_fit(self, docs):
        docs = list(docs)
        seen.append(sum(map(len, docs)))
        real_fit(self, docs)

    monkeypatch.setattr(BPETokenizer, "fit", counting_fit)
    cfg = DataConfig(source="text", path=str(f), cache_dir=str(tmp_path / "c"))
    sampled = load_tokens(cfg, TokenizerConfig(name="bpe", vocab_size=300, sample_bytes=20000))
    full = load_tokens(cfg, TokenizerConfig(name="bpe", vocab_size=300))
    assert 20000 <= seen[0] < 20000 + 2 * corpus_mod.PIECE_BYTES
    assert seen[1] > 10 * seen[0]
    assert sampled.store_dir != full.store_dir and "-s20000" in sampled.store_dir.name
    assert len(sampled.train) > 0


def test_identity_is_content_validity_is_size_and_mtime(tmp_path, monkeypatch):
    f = tmp_path / "w.txt"
    f.write_text(words_text(5000))
    cfg = DataConfig(source="text", path=str(f), cache_dir=str(tmp_path / "c"))
    hashed = []
    real = TextSource.fingerprint
    monkeypatch.setattr(TextSource, "fingerprint", lambda self: hashed.append(1) or real(self))
    first = load_tokens(cfg)
    assert load_tokens(cfg).store_dir == first.store_dir and len(hashed) == 1  # no re-hash
    assert corpus_fingerprint(cfg) == first.fingerprint == first.meta["fingerprint"]
    assert len(hashed) == 1  # cheap: read from the record, not the files

    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched (a fresh clone)
    monkeypatch.setattr(store_mod, "_build", lambda *a, **k: pytest.fail("rebuilt"))
    assert load_tokens(cfg).store_dir == first.store_dir and len(hashed) == 2  # one re-hash

    copy = tmp_path / "elsewhere.txt"
    copy.write_bytes(f.read_bytes())  # same content, other path and mtime: same store
    assert (
        load_tokens(DataConfig(**{**cfg.__dict__, "path": str(copy)})).store_dir == first.store_dir
    )

    # same size and mtime: the recorded hash stays valid (like make), the store is reused
    st = f.stat()
    f.write_text(f.read_text().replace("a", "b"))
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert load_tokens(cfg).store_dir == first.store_dir
    monkeypatch.undo()
    f.write_text(words_text(5000) + "more\n")  # a real change: another identity, a new store
    assert load_tokens(cfg).fingerprint != first.fingerprint


def _build_with_pool(cfg: DataConfig, out: str) -> None:
    store_mod.BATCH_BYTES = 30000
    corpus_mod.PIECE_BYTES = 3000
    d = load_tokens(cfg, TokenizerConfig(name="char"))
    Path(out).write_text(json.dumps([str(d.store_dir), _digest(d.train), d.meta["workers"]]))


def test_concurrent_builders_with_worker_pools_build_once(tmp_path):
    f = tmp_path / "w.txt"
    f.write_text(words_text(30000))
    cfg = DataConfig(source="text", path=str(f), cache_dir=str(tmp_path / "c"), workers=2)
    ctx = multiprocessing.get_context("fork")
    jobs = [
        ctx.Process(target=_build_with_pool, args=(cfg, str(tmp_path / f"{i}.json")))
        for i in range(2)
    ]
    for j in jobs:
        j.start()
    for j in jobs:
        j.join(120)
    results = [json.loads((tmp_path / f"{i}.json").read_text()) for i in range(2)]
    assert results[0][:2] == results[1][:2] and results[0][2] == 2
    stores = [p for p in (tmp_path / "c" / "tokens").iterdir() if p.is_dir()]
    assert len(stores) == 1  # no leftover .build-* directory either


def test_cap_and_worker_mistakes_are_one_line(tmp_path):
    f = tmp_path / "w.txt"
    f.write_text("some text\n")
    for kw, key in (({"max_tokens": 0}, "data.max_tokens"), ({"workers": -1}, "data.workers")):
        with pytest.raises(ConfigError, match=key):
            load_tokens(DataConfig(source="text", path=str(f), cache_dir=str(tmp_path), **kw))
    with pytest.raises(ConfigError, match="sample_bytes=10 is only for tokenizer=bpe"):
        ByteTokenizer.check(TokenizerConfig(name="byte", sample_bytes=10))
    with pytest.raises(ConfigError, match="sample_bytes=0 must be positive"):
        BPETokenizer.check(TokenizerConfig(name="bpe", vocab_size=300, sample_bytes=0))
    assert not (tmp_path / "tokens").exists()
    from archlab.cli import prevalidate  # what `archlab train` checks before any job starts

    for override, key in (
        ("data.max_tokens=0", "data.max_tokens"),
        ("tokenizer.sample_bytes=5", "tokenizer.sample_bytes"),
    ):
        with pytest.raises(ConfigError, match=key):
            prevalidate([override], False)


def test_val_bytes_are_the_validation_text_whatever_the_tokenizer(tmp_path, small_batches):
    """``val_bytes`` (bits per byte in ``archlab compare``): the byte store's val tokens are
    its bytes, and every tokenizer's store counts the same validation text."""
    cfg = DataConfig(cache_dir=str(tmp_path / "c"), workers=2, **_corpus(tmp_path, "tricky_text"))
    stores = {tok: load_tokens(cfg, TokenizerConfig(**TOKENIZERS[tok])) for tok in TOKENIZERS}
    assert stores["byte"].info()["val_bytes"] == len(stores["byte"].val) > 0
    assert {d.info()["val_bytes"] for d in stores.values()} == {len(stores["byte"].val)}
    assert len(stores["bpe512"].val) < len(stores["byte"].val)  # fewer tokens, same bytes
    docs = [words_text(50, seed=i) for i in range(200)]  # a token cap cuts a hashed val split
    hf = {"source": "hf", "data_files": str(write_jsonl(tmp_path / "d.jsonl", docs))}
    capped = load_tokens(DataConfig(**hf, cache_dir=str(tmp_path / "c"), max_tokens=3000))
    assert capped.info()["val_bytes"] is None
