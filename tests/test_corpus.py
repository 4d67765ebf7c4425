"""Reading corpora, writing token shards, and the LM's deterministic windows, on real text and files."""

import gzip
import hashlib
import json
import logging
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import tokenizers
from conftest import shared_data
from tokenizers import decoders, models, pre_tokenizers

from genpt.data import corpus
from genpt.data import documents as reader
from genpt.data.corpus import prepare, train_tokenizer
from genpt.data.documents import expand_inputs, iter_documents
from genpt.data.shards import LMBatches, TokenShards
from genpt.errors import GenptError
from genpt.tokenizer import Tokenizer

# Worker processes take seconds to start; one test compares them with this in-process path.
IN_PROCESS = {"workers": 1, "progress": False}


@pytest.fixture(scope="module")
def shakespeare() -> str:
    return shared_data("tinyshakespeare", "input.txt").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return train_tokenizer([shared_data("tinyshakespeare", "input.txt")], vocab_size=600)


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode("utf-8")
    path.write_bytes(gzip.compress(data, mtime=0) if path.name.endswith(".gz") else data)
    return path


@pytest.fixture
def documents(tmp_path, shakespeare) -> tuple[Path, list[str]]:
    """A folder of 12 real documents: text files, a gzipped one, and a .jsonl.gz with 6 records."""
    speeches = shakespeare.split("\n\n")
    texts = ["\n\n".join(speeches[i * 40 : (i + 1) * 40]) for i in range(12)]
    folder = tmp_path / "corpus"
    for i, text in enumerate(texts[:5]):
        _write(folder / f"play{i}.txt", text)
    _write(folder / "play5.txt.gz", texts[5])
    records = [json.dumps({"id": i, "text": t}) for i, t in enumerate(texts[6:])]
    _write(folder / "more" / "plays.jsonl.gz", "\n".join(records) + "\n")
    return folder, texts


def _split_documents(folder: Path, split: str) -> list[list[int]]:
    """The documents of a split, read back from the shards and cut at the end-of-text ids."""
    shards = TokenShards(folder, split)
    ids = shards.read(0, len(shards)).tolist()
    docs, current = [], []
    for i in ids:
        if i == shards.eot_id:
            docs.append(current)
            current = []
        else:
            current.append(i)
    assert current == []  # every document, the last included, ends with end-of-text
    return docs


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


# -- reading documents ---------------------------------------------------------------------------


def test_expand_inputs_takes_files_folders_and_globs_sorted_and_filtered(tmp_path):
    root = tmp_path / "d"
    for name in ["b.txt", "a.md", "sub/c.jsonl.gz", "sub/e.TEXT", "skip.csv", ".hidden/x.txt", ".y.txt"]:
        _write(root / name, "x")
    expected = [root / "a.md", root / "b.txt", root / "sub" / "c.jsonl.gz", root / "sub" / "e.TEXT"]
    assert expand_inputs([root]) == expected
    assert expand_inputs([str(root / "*.txt")]) == [root / "b.txt"]
    assert expand_inputs([str(root / "**" / "*.gz")]) == [root / "sub" / "c.jsonl.gz"]
    assert expand_inputs([root / "b.txt", root]) == [root / "b.txt"] + [p for p in expected if p.name != "b.txt"]


def test_expand_inputs_errors_name_what_matched_nothing(tmp_path):
    _write(tmp_path / "data.csv", "a,b")
    (tmp_path / "empty").mkdir()
    with pytest.raises(GenptError, match=r"nope\.txt: no such file or folder"):
        expand_inputs([tmp_path / "nope.txt"])
    with pytest.raises(GenptError, match=r"\*\.jsonl: pattern matches no text files"):
        expand_inputs([str(tmp_path / "*.jsonl")])
    with pytest.raises(GenptError, match=r"data\.csv: unsupported file type; expected \.txt"):
        expand_inputs([tmp_path / "data.csv"])
    with pytest.raises(GenptError, match=r"empty: folder holds no text files"):
        expand_inputs([tmp_path / "empty"])


def test_text_file_is_one_document_and_jsonl_gives_one_per_line(tmp_path):
    _write(tmp_path / "book.txt", "\ufeffChapter 1\n\nIt was a dark night.\n")
    lines = [json.dumps({"body": "first"}), "", "   ", json.dumps({"body": "second", "x": 1})]
    _write(tmp_path / "notes.jsonl.gz", "\n".join(lines) + "\n")
    docs = list(iter_documents([tmp_path / "book.txt", tmp_path / "notes.jsonl.gz"], text_field="body"))
    assert [(Path(d.source).name, d.index, d.text, d.last) for d in docs] == [
        ("book.txt", 0, "Chapter 1\n\nIt was a dark night.\n", True),  # the byte-order mark is not text
        ("notes.jsonl.gz", 0, "first", True),
        ("notes.jsonl.gz", 3, "second", True),  # index = line number - 1; blank lines are skipped
    ]


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_long_document_arrives_in_pieces_that_encode_like_the_whole(tmp_path, monkeypatch, shakespeare,
                                                                   tokenizer, newline):
    monkeypatch.setattr(reader, "PIECE_CHARS", 5000)
    monkeypatch.setattr(reader, "_READ_BYTES", 4096)  # blocks smaller than pieces, as in a big file
    text = shakespeare[:200_000].replace("\n", newline)
    pieces = list(iter_documents([_write(tmp_path / "long.txt", text)]))
    assert len(pieces) > 30 and all(len(p.text) <= 5000 for p in pieces)
    assert [p.last for p in pieces] == [False] * (len(pieces) - 1) + [True]
    assert "".join(p.text for p in pieces) == text
    assert sum((tokenizer.encode(p.text) for p in pieces), []) == tokenizer.encode(text)


def test_one_huge_line_is_still_cut_and_kept_exact(tmp_path, monkeypatch):
    monkeypatch.setattr(reader, "PIECE_CHARS", 1000)
    text = "é" * 2500 + " ok"
    pieces = list(iter_documents([_write(tmp_path / "line.txt", text)]))
    assert [len(p.text) for p in pieces] == [1000, 1000, 503] and "".join(p.text for p in pieces) == text


def test_jsonl_errors_name_the_file_and_line(tmp_path):
    bad = _write(tmp_path / "bad.jsonl", '{"text": "ok"}\n\n{"text": oops}\n')
    with pytest.raises(GenptError, match=r"bad\.jsonl:3: invalid JSON \(Expecting value at column 10\)"):
        list(iter_documents([bad]))
    missing = _write(tmp_path / "missing.jsonl", '{"text": "ok"}\n{"body": "no text"}\n')
    with pytest.raises(GenptError, match=r"missing\.jsonl:2: expected a string field 'text' \(found: body\)"):
        list(iter_documents([missing]))
    array = _write(tmp_path / "array.jsonl", '["not", "an", "object"]\n')
    with pytest.raises(GenptError, match=r"array\.jsonl:1: expected a string field 'text' \(found: list\)"):
        list(iter_documents([array]))


@pytest.mark.parametrize("name", ["latin1.txt", "latin1.txt.gz", "latin1.jsonl"])
def test_non_utf8_input_is_reported_with_file_byte_offset_and_line(tmp_path, monkeypatch, name):
    monkeypatch.setattr(reader, "_READ_BYTES", 7)  # multi-byte characters straddle the reads
    good = "naïve café — “quoted” 😀\n" * 3
    text = json.dumps({"text": good}, ensure_ascii=False) + "\n" if name.endswith("jsonl") else good
    data = text.encode("utf-8") + "crème brûlée\n".encode("latin-1")
    offset = len(text.encode("utf-8")) + 2  # "cr" then the Latin-1 byte of "è"
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    line = 2 if name.endswith("jsonl") else 4
    with pytest.raises(GenptError, match=rf"{name}: not UTF-8 at byte {offset} .*\(line {line}\); convert"):
        list(iter_documents([path]))


def test_utf8_character_cut_off_at_the_end_of_a_file_is_reported(tmp_path):
    path = tmp_path / "cut.txt"
    path.write_bytes("ok\nthen €".encode()[:-1])
    with pytest.raises(GenptError, match=r"cut\.txt: not UTF-8 at byte 8 \(line 2\)"):
        list(iter_documents([path]))


def test_corpus_of_only_empty_documents_is_an_error(tmp_path):
    _write(tmp_path / "empty.txt", "")
    _write(tmp_path / "blank.md", " \n\n\t")
    _write(tmp_path / "none.jsonl", '\n{"text": ""}\n')
    with pytest.raises(GenptError, match="every document is empty"):
        list(iter_documents([tmp_path]))


@pytest.fixture
def fake_gutenberg(monkeypatch):
    """A stand-in strip_gutenberg that shows it ran: it keeps only the text between two markers."""
    module = types.ModuleType("genpt.data.gutenberg")
    module.strip_gutenberg = lambda text: text.split("<<BEGIN>>")[-1].split("<<END>>")[0]
    monkeypatch.setitem(sys.modules, "genpt.data.gutenberg", module)


def test_strip_gutenberg_flag_reaches_the_stripper(tmp_path, tokenizer, fake_gutenberg):
    path = _write(tmp_path / "book.txt.gz", "licence header<<BEGIN>>the book itself<<END>>licence footer")
    assert [d.text for d in iter_documents([path])][0].startswith("licence header")
    assert [d.text for d in iter_documents([path], strip_gutenberg=True)] == ["the book itself"]
    stats = prepare([path], tokenizer, tmp_path / "out", val_fraction=0, strip_gutenberg=True, **IN_PROCESS)
    assert tokenizer.decode(TokenShards(stats.output_dir).read(0, stats.train_tokens)) == "the book itself<|endoftext|>"
    assert json.loads((stats.output_dir / "meta.json").read_text())["strip_gutenberg"] is True
    trained = train_tokenizer([path] * 3, vocab_size=300, min_frequency=1, strip_gutenberg=True)
    vocab = trained.hf.get_vocab()
    assert "Ġbook" in vocab and not any("lic" in token for token in vocab)


def test_real_gutenberg_book_loses_its_header_and_licence():
    gutenberg = pytest.importorskip("genpt.data.gutenberg")
    path = shared_data("gutenberg", "pg1232.txt.gz")
    whole = "".join(d.text for d in iter_documents([path]))
    stripped = "".join(d.text for d in iter_documents([path], strip_gutenberg=True))
    assert stripped == gutenberg.strip_gutenberg(whole)
    assert "START OF" in whole and "START OF" not in stripped and len(stripped) > 0.8 * len(whole)


# -- writing shards ------------------------------------------------------------------------------


def test_prepare_counts_equal_encoded_documents_plus_one_end_of_text_each(tmp_path, documents, tokenizer):
    folder, texts = documents
    stats = prepare([folder], tokenizer, tmp_path / "shards", val_fraction=0.3, **IN_PROCESS)
    meta = json.loads((tmp_path / "shards" / "meta.json").read_text())
    expected = sum(len(tokenizer.encode(t)) + 1 for t in texts)
    assert meta["splits"]["train"]["tokens"] + meta["splits"]["val"]["tokens"] == expected
    splits = meta["splits"]
    assert (stats.train_tokens, stats.val_tokens) == (splits["train"]["tokens"], splits["val"]["tokens"])
    assert stats.documents == meta["documents"] == 12
    assert stats.bytes_read == sum(len(t.encode()) for t in texts) and stats.mb_per_s > 0
    assert meta["dtype"] == "uint16" and meta["vocab_size"] == 600 and meta["eot_id"] == tokenizer.eot_id
    assert meta["tokenizer_fingerprint"] == tokenizer.fingerprint
    assert Tokenizer.load(tmp_path / "shards" / "tokenizer.json").fingerprint == tokenizer.fingerprint
    for source in meta["sources"]:
        data = Path(source["path"]).read_bytes()
        assert source["bytes"] == len(data) and source["sha256"] == hashlib.sha256(data).hexdigest()
    assert {Path(s["path"]).name for s in meta["sources"]} == {f"play{i}.txt" for i in range(5)} | {
        "play5.txt.gz", "plays.jsonl.gz"}
    shard = meta["splits"]["train"]["shards"][0]
    assert (tmp_path / "shards" / shard["file"]).stat().st_size == 2 * shard["tokens"]  # uint16


def test_prepared_shards_decode_back_to_whole_documents_in_order(tmp_path, documents, tokenizer):
    folder, texts = documents
    prepare([folder], tokenizer, tmp_path / "shards", val_fraction=0.3, seed=7, **IN_PROCESS)
    train = [tokenizer.decode(d) for d in _split_documents(tmp_path / "shards", "train")]
    val = [tokenizer.decode(d) for d in _split_documents(tmp_path / "shards", "val")]
    assert train and val and sorted(train + val) == sorted(texts)
    in_file_order = texts[6:] + texts[:6]  # more/plays.jsonl.gz sorts before play0.txt
    assert train == [t for t in in_file_order if t in train] and val == [t for t in in_file_order if t in val]


@pytest.mark.slow
def test_prepare_output_is_identical_with_one_or_two_workers(tmp_path, documents, tokenizer, monkeypatch):
    monkeypatch.setattr(reader, "PIECE_CHARS", 4000)  # many tasks in flight, so order matters
    monkeypatch.setattr(corpus, "PIECE_CHARS", 4000)
    folder, _ = documents
    one = prepare([folder], tokenizer, tmp_path / "one", workers=1, shard_tokens=3000, progress=False)
    two = prepare([folder], tokenizer, tmp_path / "two", workers=2, shard_tokens=3000, progress=False)
    assert (one.train_tokens, one.val_tokens) == (two.train_tokens, two.val_tokens)
    assert _snapshot(tmp_path / "one") == _snapshot(tmp_path / "two")


def test_shards_rotate_and_reads_cross_their_boundaries(tmp_path, documents, tokenizer):
    folder, _ = documents
    prepare([folder], tokenizer, tmp_path / "shards", val_fraction=0, shard_tokens=1000, **IN_PROCESS)
    meta = json.loads((tmp_path / "shards" / "meta.json").read_text())
    files = meta["splits"]["train"]["shards"]
    assert len(files) > 10 and all(f["tokens"] == 1000 for f in files[:-1])
    assert [f["file"] for f in files[:2]] == ["train_00000.bin", "train_00001.bin"]
    every = np.concatenate([np.fromfile(tmp_path / "shards" / f["file"], dtype="<u2") for f in files])
    shards = TokenShards(tmp_path / "shards")
    assert len(shards) == len(every) == meta["splits"]["train"]["tokens"]
    for start, length in [(0, 1), (995, 10), (1999, 2002), (len(every) - 7, 7), (0, len(every))]:
        assert np.array_equal(shards.read(start, length), every[start : start + length])
    with pytest.raises(IndexError):
        shards.read(len(every) - 1, 2)


def test_validation_split_holds_whole_documents_and_both_splits_exist(tmp_path, documents, tokenizer):
    folder, texts = documents
    prepare([folder], tokenizer, tmp_path / "few", val_fraction=0.001, **IN_PROCESS)
    val = _split_documents(tmp_path / "few", "val")
    assert len(val) == 1 and tokenizer.decode(val[0]) in texts  # chosen although 0.1% of 12 rounds to 0
    prepare([folder], tokenizer, tmp_path / "most", val_fraction=0.999, **IN_PROCESS)
    assert len(_split_documents(tmp_path / "most", "train")) == 1  # and one is kept for training
    prepare([folder], tokenizer, tmp_path / "none", val_fraction=0, **IN_PROCESS)
    assert len(_split_documents(tmp_path / "none", "train")) == 12
    with pytest.raises(GenptError, match="the val split is empty"):
        TokenShards(tmp_path / "none", "val")


def test_single_document_gives_the_tail_of_its_tokens_to_validation(tmp_path, shakespeare, tokenizer, caplog):
    path = _write(tmp_path / "only.txt", shakespeare[:50_000])
    with caplog.at_level(logging.WARNING, logger="genpt"):
        stats = prepare([path], tokenizer, tmp_path / "shards", val_fraction=0.1, shard_tokens=999, **IN_PROCESS)
    assert "only one document" in caplog.text
    ids = tokenizer.encode(shakespeare[:50_000]) + [tokenizer.eot_id]
    assert stats.val_tokens == round(0.1 * len(ids)) and stats.train_tokens + stats.val_tokens == len(ids)
    train, val = TokenShards(tmp_path / "shards", "train"), TokenShards(tmp_path / "shards", "val")
    assert train.read(0, len(train)).tolist() + val.read(0, len(val)).tolist() == ids


def test_vocabulary_over_65536_ids_is_stored_as_uint32(tmp_path):
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(alphabet)} | {f"filler{i}": 256 + i for i in range(70_000)}
    hf = tokenizers.Tokenizer(models.BPE(vocab=vocab, merges=[]))
    hf.pre_tokenizer, hf.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    big = Tokenizer.from_hf(hf)
    path = _write(tmp_path / "a.txt", "Wide ids ✓\n")
    prepare([path], big, tmp_path / "shards", val_fraction=0, **IN_PROCESS)
    shards = TokenShards(tmp_path / "shards")
    assert shards.meta["dtype"] == "uint32" and shards.eot_id > 65536
    assert (tmp_path / "shards" / "train_00000.bin").stat().st_size == 4 * len(shards)
    assert big.decode(shards.read(0, len(shards))) == "Wide ids ✓\n<|endoftext|>"


def test_prepare_errors_name_the_bad_input(tmp_path, tokenizer):
    _write(tmp_path / "in" / "empty.txt", "")
    bad = tmp_path / "in" / "legacy.txt"
    bad.write_bytes("fine\nnaïve\n".encode("latin-1"))
    cases = [
        ([tmp_path / "nope.txt"], r"nope\.txt: no such file or folder"),
        ([tmp_path / "in" / "empty.txt"], "every document is empty"),
        ([bad], r"legacy\.txt: not UTF-8 at byte 7 \(line 2\); convert the file to UTF-8"),
    ]
    for inputs, message in cases:
        with pytest.raises(GenptError, match=message):
            prepare(inputs, tokenizer, tmp_path / "out", **IN_PROCESS)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]  # no output and no leftovers


def test_failed_prepare_leaves_the_previous_output_intact(tmp_path, documents, tokenizer):
    folder, _ = documents
    out = tmp_path / "shards"
    prepare([folder], tokenizer, out, **IN_PROCESS)
    before = _snapshot(out)
    (folder / "zz_broken.jsonl").write_text('{"text": "fine"}\n{"text": broken\n')
    with pytest.raises(GenptError, match=r"zz_broken\.jsonl:2: invalid JSON"):
        prepare([folder], tokenizer, out, val_fraction=0.5, **IN_PROCESS)
    assert _snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus", "shards"]
    prepare([folder / "play0.txt", folder / "play1.txt"], tokenizer, out, **IN_PROCESS)  # success replaces
    assert TokenShards(out).meta["documents"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus", "shards"]


def test_prepare_refuses_to_replace_a_folder_it_did_not_make(tmp_path, documents, tokenizer):
    folder, _ = documents
    precious = _write(tmp_path / "home" / "thesis.tex", "years of work")
    with pytest.raises(GenptError, match=r"home: exists and was not made by `genpt prepare`"):
        prepare([folder], tokenizer, tmp_path / "home", **IN_PROCESS)
    assert precious.read_text() == "years of work"


def test_token_shards_reject_missing_or_damaged_files(tmp_path, documents, tokenizer):
    folder, _ = documents
    out = tmp_path / "shards"
    prepare([folder], tokenizer, out, val_fraction=0, shard_tokens=5000, **IN_PROCESS)
    with pytest.raises(GenptError, match=r"meta\.json: missing"):
        TokenShards(tmp_path)
    with pytest.raises(GenptError, match=r"no split 'dev'; it has train, val"):
        TokenShards(out, "dev")
    shard = out / "train_00001.bin"
    shard.write_bytes(shard.read_bytes()[:-1])
    with pytest.raises(GenptError, match=r"train_00001\.bin: 9999 bytes, expected 10000 .* truncated"):
        TokenShards(out)
    shard.unlink()
    with pytest.raises(GenptError, match=r"train_00001\.bin: missing shard"):
        TokenShards(out)
    (out / "meta.json").write_text("{not json")
    with pytest.raises(GenptError, match=r"meta\.json: not valid JSON"):
        TokenShards(out)
    (out / "meta.json").write_text(json.dumps({"format": "genpt-shards", "version": 1}))
    with pytest.raises(GenptError, match=r"meta\.json: malformed \(KeyError"):
        TokenShards(out)


# -- LM batches ----------------------------------------------------------------------------------


@pytest.fixture
def shards(tmp_path, documents, tokenizer) -> TokenShards:
    folder, _ = documents
    prepare([folder], tokenizer, tmp_path / "shards", val_fraction=0, shard_tokens=7000, **IN_PROCESS)
    return TokenShards(tmp_path / "shards")


def test_batches_are_a_pure_function_of_seed_and_index(shards):
    a, b = LMBatches(shards, 4, 32, seed=1), LMBatches(shards, 4, 32, seed=1)
    late = a.get(10 * a.num_windows)  # a later epoch first: the cached permutation must not leak
    assert a.get(5).shape == (4, 32) and str(a.get(5).dtype) == "torch.int64"
    assert a.get(5).equal(b.get(5)) and late.equal(b.get(10 * a.num_windows))
    assert not a.get(5).equal(LMBatches(shards, 4, 32, seed=2).get(5))


def test_sample_is_the_documented_window_of_the_epoch_permutation(shards):
    batches = LMBatches(shards, 3, 16, seed=9)
    n = batches.num_windows
    assert n == len(shards) // 16
    for b in [0, 1, n // 3, n // 3 + 1, 7 * n]:
        for i, row in enumerate(batches.get(b)):
            s = b * 3 + i
            window = np.random.default_rng([9, s // n]).permutation(n)[s % n]
            assert row.tolist() == shards.read(int(window) * 16, 16).tolist()


def test_every_window_is_seen_once_per_epoch_in_a_new_order(shards):
    batches = LMBatches(shards, 8, 64, seed=3)
    n = batches.num_windows
    windows = np.stack([shards.read(k * 64, 64) for k in range(n)]).astype(np.int64)
    for epoch in range(2):
        seen = batches.get_samples(range(epoch * n, (epoch + 1) * n)).numpy()
        assert sorted(map(bytes, seen)) == sorted(map(bytes, windows))
    assert not np.array_equal(batches.get_samples(range(n)).numpy(), batches.get_samples(range(n, 2 * n)).numpy())
    assert batches.get(2).equal(batches.get_samples(range(16, 24)))


def test_split_shorter_than_one_window_says_how_many_tokens_it_has(shards):
    with pytest.raises(GenptError, match=rf"has {len(shards)} tokens, fewer than the {len(shards) + 1} needed"):
        LMBatches(shards, 2, len(shards) + 1, seed=0)
