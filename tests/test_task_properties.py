"""Properties of the task readers and the input transformations, over generated inputs (hypothesis).

Readers: whatever text a row holds (any Unicode the format can carry), writing it with the standard
library's writer and reading it back gives the same texts and labels, in order, in TSV, CSV and JSON
Lines. Transformations: every sequence fits the context, keeps its special tokens where the paper puts
them, truncates only when it must, shares the budget fairly between two segments, and collates with
the extract index on the extract token. Generation is derandomized, so the suite stays deterministic.
"""

import csv
import io
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genpt.data.readers import read_examples
from genpt.data.tasks import Example, builtin_task, custom_task
from genpt.data.transforms import collate, encode_example, fit_pair
from genpt.labels import IGNORE_INDEX
from genpt.tokenizer import Tokenizer

PROPERTY = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
LABELS = ("neg", "pos", "mixed")


def text(exclude: str = "") -> st.SearchStrategy[str]:
    """Non-blank text of any Unicode category a file can hold (no surrogates, no NUL)."""
    chars = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\ufeff" + exclude)
    return st.text(chars, min_size=1, max_size=40).filter(lambda s: s.strip())


def rows(exclude: str = "") -> st.SearchStrategy[list[tuple[str, str, str]]]:
    return st.lists(st.tuples(text(exclude), text(exclude), st.sampled_from(LABELS)), min_size=1, max_size=8)


def entailment():
    return custom_task(name="pairs", type="entailment", columns=["premise", "hypothesis"], label_column="label",
                       labels=list(LABELS))


def check_read_back(path, data):
    examples = read_examples(entailment(), path)
    assert [(e.texts, e.label) for e in examples] == [((a, b), LABELS.index(label)) for a, b, label in data]


# Line endings are what TSV has no way to quote; a field's own "\r" would read as the row's CRLF ending.
@PROPERTY
@given(data=rows(exclude="\t\n\r"))
def test_tsv_rows_read_back_as_written(tmp_path, data):
    path = tmp_path / "pairs.tsv"
    path.write_text("premise\thypothesis\tlabel\n" + "".join(f"{a}\t{b}\t{c}\n" for a, b, c in data), "utf-8")
    check_read_back(path, data)


@PROPERTY
@given(data=rows(exclude="\r"))
def test_csv_rows_read_back_as_written_quotes_and_newlines_included(tmp_path, data):
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(["premise", "hypothesis", "label"])
    writer.writerows(data)
    path = tmp_path / "pairs.csv"
    path.write_bytes(out.getvalue().encode("utf-8"))
    check_read_back(path, data)


@PROPERTY
@given(data=rows())
def test_jsonl_rows_read_back_as_written(tmp_path, data):
    path = tmp_path / "pairs.jsonl"
    lines = [json.dumps({"premise": a, "hypothesis": b, "label": c}, ensure_ascii=False) for a, b, c in data]
    path.write_text("\n".join(lines) + "\n", "utf-8")
    check_read_back(path, data)


@PROPERTY
@given(a=st.lists(st.integers(0, 99), max_size=60), b=st.lists(st.integers(0, 99), max_size=60),
       budget=st.integers(0, 80))
def test_fit_pair_keeps_prefixes_within_the_budget_and_shares_it_fairly(a, b, budget):
    ca, cb = fit_pair(a, b, budget)
    assert ca == a[: len(ca)] and cb == b[: len(cb)]
    if len(a) + len(b) <= budget:
        assert (ca, cb) == (a, b)
        return
    assert len(ca) + len(cb) == budget  # nothing cut that the budget had room for
    half = budget // 2
    assert len(ca) >= min(len(a), half) and len(cb) >= min(len(b), half)  # each keeps at least its fair half


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer.train(["the cat sat on the mat; a dog, a fox and seven owls sang.\n" * 50], vocab_size=300)


@PROPERTY
@given(texts=st.lists(text(), min_size=4, max_size=4), n_ctx=st.integers(8, 64),
       transform=st.sampled_from(["classification", "entailment", "similarity", "multiple_choice"]))
def test_transformed_inputs_fit_the_context_with_their_special_tokens(tokenizer, texts, n_ctx, transform):
    spec = {"classification": builtin_task("sst2"), "entailment": builtin_task("rte"),
            "similarity": builtin_task("stsb"), "multiple_choice": builtin_task("story_cloze")}[transform]
    used = texts[: {"classification": 1, "entailment": 2, "similarity": 2, "multiple_choice": 3}[transform]]
    encoded = encode_example(spec, Example(tuple(used), 0, "generated"), tokenizer, n_ctx)
    start, delim, extract = tokenizer.start_id, tokenizer.delimiter_id, tokenizer.extract_id
    parts = [tokenizer.encode(t) for t in used]
    assert len(encoded.sequences) == {"classification": 1, "entailment": 1, "similarity": 2,
                                      "multiple_choice": 2}[transform]
    full = 0
    for seq in encoded.sequences:
        assert len(seq) <= n_ctx and seq[0] == start and seq[-1] == extract
        assert seq.count(extract) == 1 and seq.count(start) == 1
        assert seq.count(delim) == (0 if transform == "classification" else 1)
        full = max(full, sum(len(p) for p in parts) + (2 if transform == "classification" else 3))
    if transform == "similarity":  # the same pair both ways round
        ab, ba = encoded.sequences
        i, j = ab.index(delim), ba.index(delim)
        assert ab[1:i] == ba[j + 1 : -1] and ab[i + 1 : -1] == ba[1:j]
    if transform != "multiple_choice":
        assert encoded.truncated == (full > n_ctx)
    batch = collate([encoded, encoded], tokenizer.pad_id, spec.target)
    ids, index = batch["input_ids"], batch["extract_index"]
    assert (ids.gather(2, index[..., None]) == extract).all()
    assert ((batch["lm_labels"] == IGNORE_INDEX) == (ids.new_ones(ids.shape).cumsum(-1) - 1 > index[..., None])).all()
