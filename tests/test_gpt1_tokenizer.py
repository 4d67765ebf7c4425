"""GPT-1's tokenizer against its references: transformers 4.46.3's slow OpenAIGPTTokenizer (release pipeline,
run in its own virtualenv) and transformers 5.x's OpenAIGPTTokenizer (transformers pipeline), on ~1 MB of text."""

import json
import random
import re

import pytest
from conftest import bench_script, shared_data

from genpt.errors import GenptError
from genpt.gpt1_release import GPT1Tokenizer, fix_text, standardized_chunks
from genpt.gpt1_tokenizer import find_vocabulary, load, read_vocabulary, release_tokenizer, transformers_tokenizer
from genpt.tokenizer import Tokenizer

ftfy = pytest.importorskip("ftfy", reason="the release pipeline needs ftfy and spaCy: pip install ftfy==6.3.1 "
                           "spacy==3.8.18")
pytest.importorskip("spacy", reason="the release pipeline needs spaCy: pip install spacy==3.8.18")


def text_standardize(text: str) -> str:
    """Reference: the release's clean-up before spaCy (dashes, ellipses, spaces around punctuation, newlines),
    verbatim."""
    text = text.replace("—", "-")
    text = text.replace("–", "-")
    text = text.replace("―", "-")
    text = text.replace("…", "...")
    text = text.replace("´", "'")
    text = re.sub(r"""(-+|~+|!+|"+|;+|\?+|\++|,+|\)+|\(+|\\+|\/+|\*+|\[+|\]+|}+|{+|\|+|_+)""", r" \1 ", text)
    text = re.sub(r"\s*\n\s*", " \n ", text)
    text = re.sub(r"[^\S\n]+", " ", text)
    return text.strip()


_RUNS = re.compile(r"\S+|\s+")  # re's \s is str.isspace(), which is what spaCy splits on


def spacy_spans(text: str) -> list[str]:
    """Reference: the pieces spaCy's tokenizer splits `text` into before its rules run on each piece alone.

    Runs of non-space and of space characters alternate; a space that ends a token belongs to it, and any
    other whitespace becomes a piece of its own (as spaCy's `Tokenizer._tokenize_affixes` does).
    """
    spans = []
    for match in _RUNS.finditer(text):
        run = match.group()
        if run[0].isspace() and match.start() > 0 and run[0] == " ":
            run = run[1:]
        if run:
            spans.append(run)
    return spans


@pytest.fixture(scope="module")
def bench():
    """bench/gpt1_tokenizer.py: the test corpus and the reference runner, shared with the benchmark."""
    with bench_script("gpt1_tokenizer") as module:
        yield module


@pytest.fixture(scope="module")
def vocab():
    return find_vocabulary(shared_data("gpt1_bpe"))


@pytest.fixture(scope="module")
def release(vocab):
    return release_tokenizer(vocab)


@pytest.fixture(scope="module")
def corpus(bench):
    shared_data("gutenberg")
    shared_data("glue")
    texts = bench.corpus(1.0)
    assert bench.megabytes(texts) >= 1.0
    return texts


def test_release_pipeline_ids_are_those_of_transformers_4_46_slow_tokenizer(vocab, corpus, bench):
    python = bench.reference_python()
    if python is None:
        pytest.skip("no reference virtualenv: python -m venv .venv-ref && .venv-ref/bin/pip install "
                    "transformers==4.46.3 ftfy==6.3.1 spacy==3.8.18 (or set GENPT_REF_PYTHON)")
    want, _ = bench.run_reference(corpus, python)
    tokenizer = release_tokenizer(vocab)  # fresh caches
    got = [tokenizer.encode(text) for text in corpus]
    differing = [i for i, (a, w) in enumerate(zip(got, want, strict=True)) if a != w]
    assert not differing, f"{len(differing)} lines differ, first: {corpus[differing[0]]!r}"


def test_transformers_pipeline_ids_are_those_of_transformers_5(vocab, corpus, tmp_path):
    transformers = pytest.importorskip("transformers")
    (tmp_path / "vocab.json").write_bytes((shared_data("gpt1_bpe") / "encoder_bpe_40000.json").read_bytes())
    (tmp_path / "merges.txt").write_bytes((shared_data("gpt1_bpe") / "vocab_40000.bpe").read_bytes())
    reference = transformers.OpenAIGPTTokenizer.from_pretrained(tmp_path)
    texts = [t for t in corpus if not re.search("[\ud800-\udfff]", t)]  # Rust strings hold no lone surrogates
    ours = transformers_tokenizer(vocab)
    assert ours.encode_batch(texts) == [reference.encode(t, add_special_tokens=False) for t in texts]


def test_fix_text_is_ftfy(corpus):
    rng = random.Random(0)
    alphabet = list("ab <>&;#\t\n\r\x1b[m\x00\x07\x7f") + ["&amp;", "&lt;", "&EACUTE;", "Ã©", "â€™", "’", "é", "\x85",
                                                         "\u2028", "ﬁ", "ｆ", "e\u0301", "\ud800"]
    latin = [chr(c) for c in range(0xC0, 0x100)] + list("‘’‚‛“”„‟—–…") + list("ab .,'\"\n")  # ftfy's mojibake
    samples = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30))) for _ in range(5000)]
    samples += ["".join(rng.choice(latin) for _ in range(rng.randint(1, 12))) for _ in range(20000)]
    for text in samples + corpus[:2000]:
        assert fix_text(text) == ftfy.fix_text(text), repr(text)


def test_standardized_chunks_are_the_release_standardisation_split_at_spaces():
    rng = random.Random(1)
    alphabet = list('-~!";?+,)(\\/*[]}{|_ab.\' \n\t\r\u3000\xa0é') + ["—", "–", "―", "…", "´", "\n\n", "  "]
    for _ in range(20000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 14)))
        standard = text_standardize(text)
        want = standard.split(" ") if standard else []
        assert ["\n" if c[0].isspace() else c for c in standardized_chunks(text)] == want, repr(text)
        assert ["\n" if c == "\n " else c for c in spacy_spans(standard)] == want, repr(text)


def test_span_by_span_tokenization_equals_spacy_on_the_whole_text(release):
    """spaCy's last step (special cases re-applied by a phrase matcher) looks across spans; emoticons and
    contractions run together are where it shows."""
    from spacy.lang.en import English

    spacy = English().tokenizer
    pieces = [*spacy.rules, *"'\":;()-.,!?*_^<>=8oOdDpP", "s", "em", "ll", "a.m", "x", "don", "n't"]
    rng = random.Random(2)
    for _ in range(4000):
        text = "".join(rng.choice(pieces) + rng.choice(["", "", " ", "  "]) for _ in range(rng.randint(1, 8)))
        text = text.lower()
        whole = [i for token in spacy(text_standardize(ftfy.fix_text(text))) for i in release._word(token.text.lower())]
        ours: list[int] = []
        release._encode_piece(text, ours)
        assert ours == whole, repr(text)


def test_words_of_letters_are_one_spacy_token_unless_a_special_case(vocab):
    """What lets GPT1Tokenizer skip spaCy for them."""
    from spacy.lang.en import English

    spacy = English().tokenizer
    words = {w.removesuffix("</w>") for w in vocab.encoder}
    words = [w for w in words if w.isascii() and w.isalpha() and w not in spacy.rules]
    assert len(words) > 30000
    assert [w for w in words if [t.text for t in spacy(w)] != [w]] == []


def test_special_tokens_follow_the_vocabulary_in_the_original_order(release, vocab):
    assert release.vocab_size == 40483
    assert [release.start_id, release.delimiter_id, release.extract_id, release.eot_id, release.pad_id] == \
        list(range(40478, 40483))
    assert release.encode("<|start|> <|endoftext|>") == release.encode("< | start | > < | endoftext | >")
    plain = transformers_tokenizer(vocab)
    assert plain.vocab_size == 40483 and plain.extract_id == 40480 and plain.fingerprint != release.fingerprint


def test_release_tokenizer_survives_tokenizer_json_and_other_readers_get_transformers_pipeline(release, vocab,
                                                                                               tmp_path):
    release.save(tmp_path / "tokenizer.json")
    loaded = load(tmp_path / "tokenizer.json")
    assert isinstance(loaded, GPT1Tokenizer) and loaded.fingerprint == release.fingerprint
    text = "He said: “Isn't it—well…” and left.\n\nThe end"
    # transformers 4.46.3's ids for it (spaCy's "is" "n't", ftfy's straight quotes, "\n\n" as one "\n</w>")
    assert loaded.encode(text) == release.encode(text) == [487, 603, 271, 244, 544, 538, 507, 260, 862, 749, 244,
                                                           488, 999, 239, 40477, 481, 872]
    plain = Tokenizer.load(tmp_path / "tokenizer.json")  # any reader of the file but genpt's load
    assert plain.encode(text) == transformers_tokenizer(vocab).encode(text)
    assert plain.fingerprint != loaded.fingerprint  # they tokenize differently
    assert loaded.decode(loaded.encode("hello world")) == "hello world"


def test_vocabulary_files_are_checked(tmp_path):
    encoder = tmp_path / "encoder_bpe_40000.json"
    merges = tmp_path / "vocab_40000.bpe"
    with pytest.raises(GenptError, match="encoder_bpe_40000.json: missing"):
        read_vocabulary(encoder, merges)
    encoder.write_text(json.dumps({"a": 0, "b": 2}))
    with pytest.raises(GenptError, match=r"ids must be 0..1, each once"):
        read_vocabulary(encoder, merges)
    encoder.write_text(json.dumps({"a": 0, "b": 1}))
    merges.write_text("#version: 0.2\na b c\n")
    with pytest.raises(GenptError, match=r"vocab_40000.bpe, line 2: expected two symbols"):
        read_vocabulary(encoder, merges)
