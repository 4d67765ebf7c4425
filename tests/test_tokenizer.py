"""The byte-level BPE tokenizer: exact round trips, special tokens, save/load, clean errors."""

import gzip
import json
import os
import stat

import pytest
import tokenizers
from conftest import SHARED_DATA, shared_data
from tokenizers import models, pre_tokenizers

from genpt.data.corpus import train_tokenizer
from genpt.errors import GenptError
from genpt.tokenizer import SPECIAL_TOKENS, Tokenizer

ODD_TEXTS = [
    "",
    " ",
    "plain ASCII, with punctuation!?",
    "emoji 👍🏽 👩‍👩‍👧‍👦 🏳️‍🌈 and flags 🇫🇷",
    "combining e\u0301 a\u0308\u0323 Zalgo z\u0336\u0317a\u0352l\u0325g\u0300o",
    "NUL \x00 and controls \x01\x07\x1b[31m\x7f",
    "windows\r\nline\r\nendings\r\n and a lone \r carriage return",
    "\t\ttabs\t and   runs of    spaces   \n\n\n\n",
    "CJK 漢字かなカナ 한국어, Arabic مرحبا, Hebrew שלום, Devanagari नमस्ते",
    "astral 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𓀀 \U0010fffd private \ue000 replacement \ufffd BOM \ufeff",
    "zero width \u200b\u200c\u200d joiners, NBSP \u00a0 and line separator \u2028 end",
    "'s 're 've 'll 'd contractions' edge 'S",
    "1234567890 3.14159 1e-9 ½ ² Ⅻ",
]


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    """Trained once for the module, on the real Tiny Shakespeare file, small enough to be quick."""
    return train_tokenizer([shared_data("tinyshakespeare", "input.txt")], vocab_size=1000)


def _shared_files():
    files = sorted(p for p in SHARED_DATA.rglob("*") if p.is_file()) if SHARED_DATA.is_dir() else []
    return [pytest.param(p, id=str(p.relative_to(SHARED_DATA))) for p in files] or [
        pytest.param(None, id="shared-data-absent")
    ]


def _chunks(text: str, size: int = 1 << 18) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def test_special_tokens_have_ids_0_to_4_in_declared_order(tokenizer):
    ids = [tokenizer.eot_id, tokenizer.start_id, tokenizer.delimiter_id, tokenizer.extract_id, tokenizer.pad_id]
    assert ids == [0, 1, 2, 3, 4]
    assert [tokenizer.hf.id_to_token(i) for i in range(5)] == list(SPECIAL_TOKENS.values())
    assert tokenizer.vocab_size == 1000


def test_text_containing_special_token_strings_cannot_inject_control_tokens(tokenizer):
    text = "user text " + " ".join(SPECIAL_TOKENS.values()) + "<|endoftext|><|endoftext|>"
    ids = tokenizer.encode(text)
    assert min(ids) >= len(SPECIAL_TOKENS)
    assert tokenizer.decode(ids) == text
    assert all(min(row) >= len(SPECIAL_TOKENS) for row in tokenizer.encode_batch([text, text[3:]]))


@pytest.mark.slow
@pytest.mark.parametrize("path", _shared_files())
def test_round_trip_is_exact_on_shared_data_file(tokenizer, path):
    if path is None:
        pytest.skip(f"shared data not available: {SHARED_DATA}")
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:  # one Windows-1252 licence page; latin-1 maps every byte to a character
        text = data.decode("latin-1")
    chunks = _chunks(text)
    encoded = tokenizer.encode_batch(chunks)
    assert all(0 <= i < tokenizer.vocab_size for ids in encoded for i in ids)
    assert tokenizer.hf.decode_batch(encoded, skip_special_tokens=False) == chunks


@pytest.mark.parametrize("text", ODD_TEXTS)
def test_round_trip_is_exact_on_odd_unicode(tokenizer, text):
    ids = tokenizer.encode(text)
    assert tokenizer.decode(ids) == text
    assert min(ids, default=len(SPECIAL_TOKENS)) >= len(SPECIAL_TOKENS)


def test_encode_and_encode_batch_give_the_same_ids(tokenizer):
    assert tokenizer.encode_batch(ODD_TEXTS) == [tokenizer.encode(t) for t in ODD_TEXTS]


def test_decode_shows_or_skips_special_tokens(tokenizer):
    ids = [tokenizer.start_id, *tokenizer.encode("Hello"), tokenizer.eot_id]
    assert tokenizer.decode(ids) == "<|start|>Hello<|endoftext|>"
    assert tokenizer.decode(ids, skip_special_tokens=True) == "Hello"


def test_training_twice_on_the_same_text_gives_the_same_tokenizer(tokenizer):
    again = train_tokenizer([shared_data("tinyshakespeare", "input.txt")], vocab_size=1000)
    assert again.fingerprint == tokenizer.fingerprint


def test_training_reads_jsonl_fields_and_gzip_through_the_corpus_reader(tmp_path):
    records = [json.dumps({"title": "ignored heading", "body": "zebra crossing " * 20})] * 5
    (tmp_path / "docs.jsonl.gz").write_bytes(gzip.compress("\n".join(records).encode()))
    trained = train_tokenizer([tmp_path / "docs.jsonl.gz"], vocab_size=300, text_field="body")
    vocab = trained.hf.get_vocab()
    assert "Ġzebra" in vocab and not any("head" in token for token in vocab)


def test_vocab_smaller_than_bytes_plus_special_tokens_is_rejected(tmp_path):
    (tmp_path / "a.txt").write_text("some text")
    with pytest.raises(GenptError, match="at least 261"):
        train_tokenizer([tmp_path / "a.txt"], vocab_size=260)


def test_save_then_load_keeps_fingerprint_and_ids(tokenizer, tmp_path):
    path = tmp_path / "sub" / "tokenizer.json"
    tokenizer.save(path)
    loaded = Tokenizer.load(path)
    assert loaded.fingerprint == tokenizer.fingerprint
    assert [loaded.encode(t) for t in ODD_TEXTS] == [tokenizer.encode(t) for t in ODD_TEXTS]
    assert Tokenizer.load(path.parent).fingerprint == tokenizer.fingerprint  # a folder holding one
    # Overwriting is atomic and leaves no temporary file; the file is readable by others as usual.
    tokenizer.save(path)
    assert [p.name for p in path.parent.iterdir()] == ["tokenizer.json"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_load_errors_name_the_file_and_what_was_expected(tokenizer, tmp_path):
    with pytest.raises(GenptError, match=r"missing\.json: no such tokenizer file"):
        Tokenizer.load(tmp_path / "missing.json")
    garbage = tmp_path / "garbage.json"
    garbage.write_text("this is not json")
    with pytest.raises(GenptError, match=r"garbage\.json: not a Hugging Face tokenizer\.json"):
        Tokenizer.load(garbage)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"hello": "world"}))
    with pytest.raises(GenptError, match=r"other\.json: not a Hugging Face tokenizer\.json"):
        Tokenizer.load(other)
    plain = tokenizers.Tokenizer(models.BPE(vocab={"a": 0, "b": 1}, merges=[]))
    plain.save(str(tmp_path / "plain.json"))
    with pytest.raises(GenptError, match=r"plain\.json: lacks the special tokens <\|endoftext\|>"):
        Tokenizer.load(tmp_path / "plain.json")


def test_from_hf_appends_missing_special_tokens_and_leaves_the_original_alone():
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    hf = tokenizers.Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(sorted(alphabet))}, merges=[]))
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    wrapped = Tokenizer.from_hf(hf)
    assert hf.get_vocab_size() == 256 and hf.token_to_id("<|start|>") is None
    # start / delimiter / extract first: where GPT-1 kept its three extra embeddings (40478..40480).
    assert (wrapped.start_id, wrapped.delimiter_id, wrapped.extract_id) == (256, 257, 258)
    assert (wrapped.eot_id, wrapped.pad_id) == (259, 260)
    assert wrapped.vocab_size == 261
    assert min(wrapped.encode("<|start|> text")) < 256
    assert Tokenizer.from_hf(wrapped.hf).fingerprint == wrapped.fingerprint  # nothing added twice
