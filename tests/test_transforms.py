"""The four input transformations: exact token layouts, fair truncation, padding kept out."""

import pytest

from genpt.data.corpus import train_tokenizer
from genpt.data.tasks import Example, custom_task
from genpt.data.transforms import collate, encode_example, encode_examples, fit_pair
from genpt.labels import IGNORE_INDEX


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    corpus = tmp_path_factory.mktemp("tok") / "corpus.txt"
    corpus.write_text("the cat sat on the mat. a dog ran in the park. is it true? yes it is.\n" * 50)
    return train_tokenizer([corpus], vocab_size=300)


def spec(type_, columns, **kw):
    return custom_task(name="t", type=type_, format="csv", columns=columns, label_column="label", **kw)


def test_classification_is_start_text_extract(tok):
    s = spec("classification", ["text"], labels=["0", "1"])
    e = encode_example(s, Example(("the cat sat",), 1, "f:2"), tok, 64)
    assert e.sequences == [[tok.start_id, *tok.encode("the cat sat"), tok.extract_id]]
    assert e.label == 1 and not e.truncated


def test_entailment_is_start_premise_delim_hypothesis_extract(tok):
    s = spec("entailment", ["premise", "hypothesis"], labels=["no", "yes"])
    e = encode_example(s, Example(("a dog ran", "is it true"), 0, "f:2"), tok, 64)
    assert e.sequences == [[tok.start_id, *tok.encode("a dog ran"), tok.delimiter_id,
                            *tok.encode("is it true"), tok.extract_id]]


def test_similarity_gives_both_orderings(tok):
    s = spec("similarity", ["a", "b"], labels=["0", "1"])
    a, b = tok.encode("the mat"), tok.encode("the park")
    e = encode_example(s, Example(("the mat", "the park"), 1, "f:2"), tok, 64)
    S, D, X = tok.start_id, tok.delimiter_id, tok.extract_id
    assert e.sequences == [[S, *a, D, *b, X], [S, *b, D, *a, X]]


def test_multiple_choice_gives_one_sequence_per_answer(tok):
    s = custom_task(name="mc", type="multiple_choice", format="csv", columns=["context", "a1", "a2", "a3"],
                    label_column="label", num_choices=3)
    texts = ("the cat sat", "on the mat", "in the park", "yes")
    e = encode_example(s, Example(texts, 2, "f:2"), tok, 64)
    ctx = tok.encode("the cat sat")
    assert e.sequences == [[tok.start_id, *ctx, tok.delimiter_id, *tok.encode(t), tok.extract_id]
                           for t in texts[1:]]
    assert e.label == 2


def test_fair_truncation_keeps_the_short_segment_and_halves_two_long_ones():
    assert fit_pair([1] * 3, [2] * 20, 10) == ([1] * 3, [2] * 7)
    assert fit_pair([1] * 20, [2] * 3, 10) == ([1] * 7, [2] * 3)
    assert fit_pair([1] * 20, [2] * 20, 11) == ([1] * 5, [2] * 6)
    assert fit_pair([1] * 2, [2] * 2, 10) == ([1] * 2, [2] * 2)


def test_truncation_keeps_the_extract_token_and_is_counted(tok):
    s = spec("entailment", ["premise", "hypothesis"], labels=["no", "yes"])
    long = "the cat sat on the mat " * 20
    examples = [Example((long, "yes"), 1, "f:2"), Example(("a dog", "yes"), 0, "f:3")]
    encoded, cut = encode_examples(s, examples, tok, 16)
    assert cut == 1 and encoded[0].truncated
    assert len(encoded[0].sequences[0]) == 16
    assert encoded[0].sequences[0][-1] == tok.extract_id
    assert encoded[0].sequences[0][-3:-1] == [tok.delimiter_id, *tok.encode("yes")][-2:]


def test_padding_uses_the_pad_id_and_is_ignored_by_the_lm_labels(tok):
    s = spec("classification", ["text"], labels=["0", "1"])
    encoded, _ = encode_examples(s, [Example(("the cat sat on the mat",), 1, "f:2"),
                                     Example(("yes",), 0, "f:3")], tok, 64)
    batch = collate(encoded, tok.pad_id, "class")
    ids, extract, labels = batch["input_ids"], batch["extract_index"], batch["lm_labels"]
    n0, n1 = len(encoded[0].sequences[0]), len(encoded[1].sequences[0])
    assert ids.shape == (2, 1, n0)
    assert extract.tolist() == [[n0 - 1], [n1 - 1]]
    assert ids[1, 0, n1:].eq(tok.pad_id).all() and tok.pad_id not in tok.encode("the cat sat on the mat")
    assert labels[1, 0, n1:].eq(IGNORE_INDEX).all() and labels[1, 0, :n1].tolist() == encoded[1].sequences[0]
    assert batch["labels"].tolist() == [1, 0]
