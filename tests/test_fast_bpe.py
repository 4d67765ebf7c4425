"""genpt.fast_bpe: tiktoken gives the ids of Hugging Face `tokenizers`, or genpt's Tokenizer keeps using `tokenizers`.

The reference is always the Hugging Face tokenizer inside genpt's `Tokenizer` (`tokenizer.hf`), called directly.
"""

import gzip
import json
import pickle
import random

import pytest
import tiktoken
import tokenizers
from conftest import shared_data
from tokenizers import models, pre_tokenizers

from genpt.data.corpus import train_tokenizer
from genpt.fast_bpe import PATTERN, NotExact, build_encoding, byte_to_unicode, cut_text, mergeable_ranks
from genpt.gpt1_tokenizer import find_vocabulary, transformers_tokenizer
from genpt.tokenizer import SPECIAL_TOKENS, Tokenizer

# (path under ../shared/data, how to read it): 6.2 MB, 94,000 lines; of it only Shakespeare was seen in training
REAL_FILES = {
    "tinyshakespeare": ("tinyshakespeare/input.txt", "utf-8"),
    "alice": ("gutenberg/11-0.txt.gz", "utf-8"),
    "korean-tales": ("gutenberg/pg55539.txt.gz", "utf-8"),
    "58866": ("gutenberg/58866-0.txt.gz", "utf-8"),
    "1155": ("gutenberg/1155-0.txt.gz", "utf-8"),
    "glue-cola": ("glue/CoLA/train.tsv", "utf-8"),
    "glue-sst2-dev": ("glue/SST-2/dev.tsv", "utf-8"),
    "glue-mrpc": ("glue/MRPC/train.tsv", "utf-8"),
    "glue-stsb": ("glue/STS-B/train.tsv", "utf-8"),
    "glue-qnli": ("glue/QNLI/dev.tsv", "utf-8"),
    "mrpc-licence-cp1252": ("glue/MRPC/Microsoft Shared Source License.htm", "latin-1"),  # C1 controls, NBSP
}
ODD = [
    "emoji 👍🏽 👩‍👩‍👧‍👦 🏳️‍🌈 flags 🇫🇷🇯🇵", "combining e\u0301 a\u0308\u0323 z\u0336\u0317a\u0352l\u0325g\u0300o",
    "NUL \x00 controls \x01\x07\x1b[31m\x7f \x85 \x9c", "windows\r\nline\r\nendings\r\n\r\n", "lone \r CR",
    "\t\ttabs\t and   runs of    spaces   \n\n\n\n", " " * 300, "\t" * 40 + "x", "\n" * 50 + "y", "1" * 2000,
    "3.14159 1e-9 1,000,000 ½ ² Ⅻ ٣٤٥ ５６", "CJK 漢字かなカナ 한국어 Arabic مرحبا Hebrew שלום हिन्दी नमस्ते",
    "astral 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𓀀 \U0010fffd private \ue000 \U000f0000 replacement \ufffd BOM \ufeff \ufffe \uffff",
    "zero width \u200b\u200c\u200d NBSP \u00a0 LS \u2028 PS \u2029 ideographic \u3000 NNBSP \u202f",
    "'s 're 've 'll 'd 'm 't 'S 'RE ''s '' ' s", "ǅ ß ﬁ ﬂ ｆｕｌｌ İstanbul ΣΑΣ ΟΔΟΣ", "\u2014\u2013\u2026\u201c\u201d",
    "http://example.com/a?b=c&d=e#f me@mail.org", "a\u0300" * 200, "🙂" * 300, "-" * 500, "?!" * 100,
    *SPECIAL_TOKENS.values(), "<|endoftext|><|endoftext|>", "<|endoftext", "endoftext|>", "< |endoftext| >",
    "<|ENDOFTEXT|>", " <|pad|>\n<|start|>x<|delim|>y<|extract|>", "<s></s><unk>[CLS][SEP]",
]


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    """4,000 ids trained on Tiny Shakespeare and two books: real merges, trained in a few seconds."""
    books = [shared_data("gutenberg", name) for name in ("pg2500.txt.gz", "863-0.txt.gz")]
    return train_tokenizer([shared_data("tinyshakespeare", "input.txt"), *books], vocab_size=4000)


def _read(name: str) -> str:
    path, encoding = REAL_FILES[name]
    path = shared_data(*path.split("/"))
    if path.suffix == ".gz":
        return gzip.decompress(path.read_bytes()).decode(encoding)
    return path.read_bytes().decode(encoding)


def _hf_ids(tokenizer: Tokenizer, texts: list[str]) -> list[list[int]]:
    return [e.ids for e in tokenizer.hf.encode_batch_fast(texts, add_special_tokens=False)]


def _assert_same(texts: list[str], got: list[list[int]], expected: list[list[int]]) -> None:
    """Equal id lists, or a failure naming the first text that differs."""
    for text, g, e in zip(texts, got, expected, strict=True):
        assert g == e, f"ids differ for {text[:200]!r}"


@pytest.fixture
def threads(monkeypatch):
    """Two encoding threads, whatever the machine and environment."""
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "true")
    monkeypatch.setenv("RAYON_NUM_THREADS", "2")


def test_the_real_files_compared_hold_megabytes_of_text():
    assert sum(len(_read(name).encode("utf-8")) for name in REAL_FILES) > 6_000_000


@pytest.mark.slow
@pytest.mark.parametrize("name", REAL_FILES)
def test_ids_equal_tokenizers_on_every_line_of_a_real_file(tokenizer, name, threads):
    assert tokenizer._tiktoken() is not None, "a tokenizer trained by genpt must take the fast path"
    lines = _read(name).splitlines(keepends=True)  # \r\n, \x85, \u2028 ... stay in the text
    expected = _hf_ids(tokenizer, lines)
    _assert_same(lines, tokenizer.encode_batch(lines), expected)
    _assert_same(lines, [tokenizer.encode(line) for line in lines], expected)


@pytest.mark.parametrize("name", ["tinyshakespeare", "korean-tales", "glue-mrpc"])
def test_ids_equal_tokenizers_on_a_whole_file_cut_for_threads(tokenizer, name, threads):
    text = _read(name)
    expected = tokenizer.hf.encode(text, add_special_tokens=False).ids
    assert tokenizer.encode_batch([text, text[:1000]]) == [expected, _hf_ids(tokenizer, [text[:1000]])[0]]
    assert tokenizer.encode(text) == expected


def test_cutting_a_text_changes_no_id_in_either_encoder(tokenizer):
    text = _read("alice") + "\n".join(ODD)
    pieces = cut_text(text, 997)
    assert "".join(pieces) == text and len(pieces) > 100
    fast = tokenizer._tiktoken()
    assert [i for piece in pieces for i in fast.encode_ordinary(piece)] == tokenizer.encode(text)
    assert [i for ids in _hf_ids(tokenizer, pieces) for i in ids] == tokenizer.hf.encode(text).ids
    assert cut_text("x" * 5000, 10) == ["x" * 5000]  # no whitespace, no cut


def test_ids_equal_tokenizers_on_odd_unicode_and_special_token_lookalikes(tokenizer, threads):
    rng = random.Random(0)
    words = _read("alice").split()[:5000]
    mixed = ["".join(rng.choice(ODD + words) + rng.choice(("", " ", "  ", "\n", "\r\n", "\t")) for _ in
                     range(rng.randint(1, 12))) for _ in range(3000)]
    texts = ["", *ODD, *mixed, "".join(ODD) * 20]
    expected = _hf_ids(tokenizer, texts)
    _assert_same(texts, tokenizer.encode_batch(texts), expected)
    _assert_same(texts, [tokenizer.encode(t) for t in texts], expected)
    assert min(i for ids in expected for i in ids) >= len(SPECIAL_TOKENS)  # no special token from text


def test_every_control_character_and_short_whitespace_mix_encodes_alike(tokenizer):
    chars = [chr(c) for c in range(0x21)] + ["\x7f", "\x85", "\xa0", "\u2028", "\u3000", "a", "1", "!", "'", "s"]
    texts = [a + b + c for a in chars for b in chars for c in ("", "x", " ", "\n")]
    _assert_same(texts, [tokenizer.encode(t) for t in texts], _hf_ids(tokenizer, texts))


def test_lone_surrogates_are_refused_as_tokenizers_refuses_them(tokenizer):
    # tiktoken alone would encode them as U+FFFD; genpt hands them to tokenizers instead.
    with pytest.raises(TypeError):
        tokenizer.hf.encode("a\ud800b")
    with pytest.raises(TypeError):
        tokenizer.encode("a\ud800b")
    with pytest.raises(TypeError):
        tokenizer.encode_batch(["fine", "a\udfffb"])


def _probe_tokenizer() -> tokenizers.Tokenizer:
    """Bytes plus the merges of 'a', '1' and '!' with any first byte of a character, and nothing else.

    Such a merge can only happen where the pre-tokenizer leaves the character in the same piece as the
    'a', '1' or '!' before it, so the ids show which of letter, number, other or space each engine takes
    every character for.
    """
    symbol = byte_to_unicode()
    vocab = {symbol[b]: b for b in range(256)}
    merges = []
    for first in b"a1!":
        for lead in [*range(0x80), *range(0xC2, 0xF5)]:
            vocab[symbol[first] + symbol[lead]] = len(vocab)
            merges.append((symbol[first], symbol[lead]))
    hf = tokenizers.Tokenizer(models.BPE(vocab, merges))
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    return hf


@pytest.mark.slow
def test_both_regex_engines_put_every_code_point_in_the_same_class():
    # Oniguruma (tokenizers) and fancy-regex (tiktoken) carry their own Unicode tables. All of planes 0-3
    # and 14 (every script so far), and a sample of the rest (unassigned or private use).
    hf = _probe_tokenizer()
    fast = build_encoding(hf)
    points = [*range(0x40000), *range(0xE0000, 0xE1000), *range(0x40000, 0x110000, 61)]
    chars = [chr(c) for c in points if not 0xD800 <= c <= 0xDFFF]
    for first in "a1!":
        text = "".join(first + c + "\n" for c in chars)
        assert fast.encode_ordinary(text) == hf.encode(text).ids, f"the engines split {first!r} + some character apart"


# -- where it is not exact -----------------------------------------------------------------------------------


def _variant(tokenizer: Tokenizer, change) -> tokenizers.Tokenizer:
    """A copy of `tokenizer.hf` with `change(spec)` applied to its tokenizer.json."""
    spec = json.loads(tokenizer.hf.to_str())
    change(spec)
    hf = tokenizers.Tokenizer.from_str(json.dumps(spec))
    hf.encode_special_tokens = True
    return hf


def _bpe(merges: list[tuple[str, str]], ids: dict[str, int] | None = None) -> tokenizers.Tokenizer:
    """A byte-level BPE with the given merges; products get ids in merge order unless `ids` says otherwise."""
    symbol = byte_to_unicode()
    vocab = {symbol[b]: b for b in range(256)}
    for left, right in merges:
        vocab.setdefault(left + right, len(vocab))
    vocab.update(ids or {})
    hf = tokenizers.Tokenizer(models.BPE(vocab, merges))
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    return hf


def _set_pre(**settings):
    return lambda spec: spec["pre_tokenizer"].update(settings)


PIPELINE_CHANGES = {
    "a normalizer": (lambda spec: spec.update(normalizer={"type": "NFC"}), "normalizer"),
    "a prefix space": (_set_pre(add_prefix_space=True), "pre-tokenizer"),
    "no regex": (_set_pre(use_regex=False), "pre-tokenizer"),
    "another pre-tokenizer": (lambda spec: spec.update(pre_tokenizer={"type": "Whitespace"}), "pre-tokenizer"),
    "ignore_merges": (lambda spec: spec["model"].update(ignore_merges=True), "ignore_merges"),
    "dropout": (lambda spec: spec["model"].update(dropout=0.1), "dropout"),
    "an end-of-word suffix": (lambda spec: spec["model"].update(end_of_word_suffix="</w>"), "suffix"),
    "truncation": (lambda spec: spec.update(truncation={"direction": "Right", "max_length": 8, "strategy":
                                                        "LongestFirst", "stride": 0}), "truncates"),
    "a template post-processor": (lambda spec: spec.update(post_processor={
        "type": "TemplateProcessing", "single": [{"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [{"Sequence": {"id": "A", "type_id": 0}}], "special_tokens": {}}), "post-processor"),
    "a plain added token": (lambda spec: spec["added_tokens"].append(
        {"id": len(spec["model"]["vocab"]), "content": "hello world", "single_word": False, "lstrip": False,
         "rstrip": False, "normalized": False, "special": False}), "added tokens"),
}


@pytest.mark.parametrize("change", PIPELINE_CHANGES)
def test_a_pipeline_that_could_split_text_otherwise_falls_back_to_tokenizers(tokenizer, change):
    edit, reason = PIPELINE_CHANGES[change]
    hf = _variant(tokenizer, edit)
    with pytest.raises(NotExact, match=reason):
        mergeable_ranks(hf)
    assert build_encoding(hf) is None
    if change in ("dropout", "truncation"):
        return  # random, or cut short: nothing to compare id for id
    slow = Tokenizer(hf)
    texts = [" Hello world", "hello world, hello", "<|endoftext|> héllo", "x" * 40]
    assert [slow.encode(t) for t in texts] == slow.encode_batch(texts) == _hf_ids(slow, texts)
    assert slow._tiktoken() is None


def test_special_tokens_readable_from_text_fall_back(tokenizer):
    hf = tokenizers.Tokenizer.from_str(tokenizer.hf.to_str())
    hf.encode_special_tokens = False
    with pytest.raises(NotExact, match="encode_special_tokens"):
        mergeable_ranks(hf)


MERGE_PROBLEMS = {
    # token "abc" made twice
    "two rules make one token": ([("b", "c"), ("a", "bc"), ("a", "b"), ("ab", "c")], None, "more than one"),
    # the ids run against the rule order
    "ids fall": ([("a", "b"), ("c", "d")], {"ab": 300, "cd": 299}, "do not rise"),
    # a rule that merges what only a later rule makes
    "rule before its part": ([("ab", "c"), ("a", "b")], None, "no earlier rule made"),
    # "abc" = ab + c, but "bc" merges first, so tokenizers never reaches "abc" (see the next test)
    "unreachable token": ([("b", "c"), ("a", "b"), ("ab", "c")], None, "not what its own bytes encode to"),
}


@pytest.mark.parametrize("problem", MERGE_PROBLEMS)
def test_merges_tiktoken_would_read_otherwise_fall_back_to_tokenizers(problem):
    merges, ids, reason = MERGE_PROBLEMS[problem]
    hf = _bpe(merges, ids)
    with pytest.raises(NotExact, match=reason):
        mergeable_ranks(hf)
    assert build_encoding(hf) is None


def test_a_vocabulary_without_every_byte_falls_back_to_tokenizers():
    spec = json.loads(_bpe([("a", "b")]).to_str())
    del spec["model"]["vocab"][byte_to_unicode()[0xFF]]
    with pytest.raises(NotExact, match="lacks 1 of the 256 byte symbols"):
        mergeable_ranks(tokenizers.Tokenizer.from_str(json.dumps(spec)))


def test_unreachable_token_is_why_the_reachability_check_exists():
    # Rules (b c), (a b), (ab c) with ids rising: tokenizers encodes "abc" as a + bc, as no rule merges
    # those two; tiktoken merges any neighbours that spell a token, and takes the whole piece "abc" at once.
    hf = _bpe([("b", "c"), ("a", "b"), ("ab", "c")])
    ranks = {bytes([b]): b for b in range(256)} | {b"bc": 256, b"ab": 257, b"abc": 258}
    unchecked = tiktoken.Encoding("unchecked", pat_str=PATTERN, mergeable_ranks=ranks, special_tokens={})
    assert hf.encode("abc").ids == [ord("a"), 256]
    assert unchecked.encode_ordinary("abc") == [258] != hf.encode("abc").ids
    assert unchecked.encode_ordinary("xabc") == [ord("x"), 258]  # also without the whole-piece shortcut


def test_gpt1_vocabulary_with_bert_pipeline_falls_back_to_tokenizers():
    gpt1 = transformers_tokenizer(find_vocabulary(shared_data("gpt1_bpe")))
    with pytest.raises(NotExact, match="normalizer"):
        mergeable_ranks(gpt1.hf)
    texts = ["Hello, World! It's GPT-1.", "naïve café <unk>", _read("alice")[:3000]]
    assert gpt1.encode_batch(texts) == _hf_ids(gpt1, texts)
    assert gpt1._tiktoken() is None


def test_a_tokenizer_built_from_a_clean_vocabulary_by_hand_takes_the_fast_path():
    hf = _bpe([("a", "b"), ("ab", "c"), ("Ġ", "ab")])
    fast = build_encoding(hf)
    assert fast is not None
    texts = ["abc ab abcabc", "cab  ab\nabab", "xyz"]
    assert [fast.encode_ordinary(t) for t in texts] == [hf.encode(t).ids for t in texts]


# -- crossing processes --------------------------------------------------------------------------------------


def test_pickled_and_json_copies_keep_the_fast_path_and_refuse_special_tokens(tokenizer):
    text = "a <|endoftext|> b " + _read("alice")[:2000]
    expected = tokenizer.encode(text)
    for copy in (pickle.loads(pickle.dumps(tokenizer)), Tokenizer.from_str(tokenizer.to_str())):
        assert copy.hf.encode_special_tokens
        assert copy.encode(text) == expected
        assert copy._tiktoken() is not None
    assert len(pickle.dumps(tokenizer)) < 2 * len(tokenizer.to_str())  # the JSON, not tiktoken's tables
