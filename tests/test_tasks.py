"""Task readers on the real GLUE / Story Cloze files, on user files described without code, on bad files."""

import csv
import json
from collections import Counter
from dataclasses import replace

import pytest
from conftest import shared_data
from sklearn.model_selection import train_test_split

from genpt.data.readers import infer_labels, read_examples, story_cloze_split
from genpt.data.tasks import BUILTIN_TASKS, Example, TaskSpec, builtin_task, custom_task, task_from_toml
from genpt.errors import GenptError

STORY_CLOZE = ("story_cloze", "cloze_test_val__spring2016 - cloze_test_ALL_val.csv")

# (task, file under shared/data, rows, label counts by id, first example's texts and label): the counts are
# SOURCES.md's, from the official GLUE sizes.
REAL_FILES = [
    ("sst2", ("glue", "SST-2", "train.tsv"), 67_349, {1: 37_569, 0: 29_780},
     ("hide new secretions from the parental units ",), 0),
    ("sst2", ("glue", "SST-2", "dev.tsv"), 872, {1: 444, 0: 428},
     ("it 's a charming and often affecting journey . ",), 1),
    ("cola", ("glue", "CoLA", "train.tsv"), 8_551, {1: 6_023, 0: 2_528},
     ("Our friends won't buy this analysis, let alone the next one we propose.",), 1),
    ("cola", ("glue", "CoLA", "dev.tsv"), 1_043, {1: 721, 0: 322},
     ("The sailors rode the breeze clear of the rocks.",), 1),
    ("mrpc", ("glue", "MRPC", "train.tsv"), 3_668, {1: 2_474, 0: 1_194},
     ('Amrozi accused his brother, whom he called "the witness", of deliberately distorting his evidence.',
      'Referring to him as only "the witness", Amrozi accused his brother of deliberately distorting his '
      "evidence."), 1),
    ("mrpc", ("glue", "MRPC", "dev.tsv"), 408, {1: 279, 0: 129},
     ("He said the foodservice pie business doesn't fit the company's long-term growth strategy.",
      '"The foodservice pie business does not fit our long-term growth strategy.'), 1),  # a bare quote
    ("mrpc", ("glue", "MRPC", "msr_paraphrase_train.txt"), 4_076, None,
     ('Amrozi accused his brother, whom he called "the witness", of deliberately distorting his evidence.',
      'Referring to him as only "the witness", Amrozi accused his brother of deliberately distorting his '
      "evidence."), 1),
    ("stsb", ("glue", "STS-B", "train.tsv"), 5_749, None,
     ("A plane is taking off.", "An air plane is taking off."), 5.0),
    ("stsb", ("glue", "STS-B", "dev.tsv"), 1_500, None,
     ("A man with a hard hat is dancing.", "A man wearing a hard hat is dancing."), 5.0),
    ("wnli", ("glue", "WNLI", "train.tsv"), 635, {0: 323, 1: 312},
     ("I stuck a pin through a carrot. When I pulled the pin out, it had a hole.",
      "The carrot had a hole."), 1),
    ("wnli", ("glue", "WNLI", "dev.tsv"), 71, {0: 40, 1: 31},
     ("The drain is clogged with hair. It has to be cleaned.", "The hair has to be cleaned."), 0),
    ("qnli", ("glue", "QNLI", "dev.tsv"), 5_463, {0: 2_702, 1: 2_761},
     ("What came into force after the new constitution was herald?",
      "As of that day, the new constitution heralding the Second Republic came into force."), 0),
    ("story_cloze", STORY_CLOZE, 1_871, None,
     ("Rick grew up in a troubled household. He never found good support in family, and turned to gangs. "
      "It wasn't long before Rick got shot in a robbery. The incident caused him to turn a new leaf.",
      "He is happy now.", "He joined a gang."), 0),
]


@pytest.mark.parametrize(("task", "parts", "rows", "counts", "texts", "label"), REAL_FILES,
                         ids=[f"{r[0]}-{r[1][-1]}" for r in REAL_FILES])
def test_builtin_reader_gets_every_row_of_the_real_file(task, parts, rows, counts, texts, label):
    path = shared_data(*parts)
    spec = builtin_task(task)
    examples = read_examples(spec, path)
    assert len(examples) == rows
    assert examples[0].texts == texts and examples[0].label == label
    assert all(len(e.texts) == len(texts) and all(t.strip() for t in e.texts) for e in examples)
    if spec.target == "score":
        assert all(0.0 <= e.label <= 5.0 for e in examples)
    else:
        assert {e.label for e in examples} == set(range(len(spec.label_names)))
    if counts:
        assert Counter(e.label for e in examples) == counts
    first_line = 1 if not spec.header else 2
    assert examples[0].source == f"{path}:{first_line}" and examples[-1].source.startswith(f"{path}:")


def test_story_cloze_labels_match_an_independent_csv_parse():
    path = shared_data(*STORY_CLOZE)
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    examples = read_examples(builtin_task("story_cloze"), path)
    assert [e.label for e in examples] == [int(r["AnswerRightEnding"]) - 1 for r in rows]
    assert [e.texts[1:] for e in examples] == [
        (r["RandomFifthSentenceQuiz1"], r["RandomFifthSentenceQuiz2"]) for r in rows]


def test_story_cloze_split_is_gpt1s_split_of_the_validation_file():
    path = shared_data(*STORY_CLOZE)
    examples = read_examples(builtin_task("story_cloze"), path)
    train, dev = story_cloze_split(examples)
    assert (len(train), len(dev)) == (1_497, 374)
    assert story_cloze_split(examples) == (train, dev)
    assert {e.source for e in train}.isdisjoint(e.source for e in dev)
    # finetune-transformer-lm's datasets.py: csv.reader rows, story = ' '.join(line[1:5]), seed 3535999445
    with open(path) as f:
        lines = list(csv.reader(f))[1:]
    stories = [" ".join(line[1:5]) for line in lines]
    ys = [int(line[-1]) - 1 for line in lines]
    tr_s, va_s, tr_y, va_y = train_test_split(stories, ys, test_size=374, random_state=3535999445)
    assert [e.texts[0] for e in train] == tr_s and [e.label for e in train] == tr_y
    assert [e.texts[0] for e in dev] == va_s and [e.label for e in dev] == va_y
    assert story_cloze_split(examples, seed=1)[1] != dev


def write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


def test_absent_builtin_layouts_read_from_files_in_their_real_format(tmp_path):
    mnli_header = ("index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\t"
                   "sentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label\n")
    cases = {
        "rte": ("index\tsentence1\tsentence2\tlabel\n0\tA man \"quoted\".\tA man.\tnot_entailment\n", 1),
        "mnli": (mnli_header + "0\t1\t1e\tgov\t(x)\t(y)\t(X)\t(Y)\tP one.\tH one.\tneutral\tneutral\n", 2),
        "snli": (mnli_header + "0\t1\t1e\tcap\t(x)\t(y)\t(X)\t(Y)\tP.\tH.\t-\t-\n"
                 "1\t1\t1c\tcap\t(x)\t(y)\t(X)\t(Y)\tP two.\tH two.\tcontradiction\tcontradiction\n", 0),
        "qqp": ("id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n7\t1\t2\tWhy?\tHow come?\t1\n", 1),
        "scitail": ("Plants make food.\tPlants produce food.\tentails\n", 0),
    }
    for task, (text, label) in cases.items():
        examples = read_examples(builtin_task(task), write(tmp_path / f"{task}.tsv", text))
        # SNLI's "-" row (no gold label) is dropped
        assert len(examples) == 1 and examples[0].label == label, task
    unlabeled = read_examples(builtin_task("snli"), tmp_path / "snli.tsv", require_labels=False)
    assert [e.label for e in unlabeled] == [None, 0]


def test_builtin_names_ignore_case_and_unknown_names_list_the_known_ones():
    assert builtin_task("SST-2") is builtin_task("sst2") is BUILTIN_TASKS["sst2"]
    assert builtin_task("StoryCloze").name == "story_cloze"
    with pytest.raises(GenptError, match="sst2, cola, mrpc"):
        builtin_task("imdb")


def test_every_builtin_spec_survives_a_json_round_trip():
    for spec in BUILTIN_TASKS.values():
        assert TaskSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    with pytest.raises(GenptError, match="unknown key"):
        TaskSpec.from_dict({**BUILTIN_TASKS["sst2"].to_dict(), "colour": "red"})


def test_unlabeled_file_gives_examples_with_no_label(tmp_path):
    path = write(tmp_path / "test.tsv", "index\tsentence\n0\tgood film\n1\tbad film\n")  # GLUE test layout
    examples = read_examples(builtin_task("sst2"), path, require_labels=False)
    assert [(e.texts, e.label) for e in examples] == [(("good film",), None), (("bad film",), None)]
    with pytest.raises(GenptError, match=r"test\.tsv:1: no column 'label'"):
        read_examples(builtin_task("sst2"), path)


CSV = ('id,title,body,verdict\n'
       '1,Fine,"Works, mostly.",good\n'
       '2,"Quote ""this""","Two\nlines",bad\n'
       '3,Meh,It broke.,bad\n')


def test_csv_task_defined_without_code_reads_quotes_and_infers_sorted_labels(tmp_path):
    path = write(tmp_path / "reviews.csv", CSV)
    spec = infer_labels(custom_task(name="reviews", type="entailment", columns=["title", "body"],
                                    label_column="verdict"), path)
    assert (spec.transform, spec.target, spec.label_names, spec.format) == (
        "entailment", "class", ("bad", "good"), "auto")
    examples = read_examples(spec, path)
    assert [(e.texts, e.label) for e in examples] == [
        (("Fine", "Works, mostly."), 1), (('Quote "this"', "Two\nlines"), 0), (("Meh", "It broke."), 0)]
    assert [e.source for e in examples] == [f"{path}:2", f"{path}:3", f"{path}:5"]
    toml = write(tmp_path / "reviews.toml", 'name = "reviews"\ntype = "entailment"\nformat = "csv"\n'
                 'columns = ["title", "body"]\nlabel_column = "verdict"\nlabels = ["bad", "good"]\n')
    from_toml = task_from_toml(toml)
    assert read_examples(from_toml, path) == examples
    assert from_toml == TaskSpec.from_dict(from_toml.to_dict())


def test_custom_types_map_to_transforms_targets_and_labels(tmp_path):
    regression = custom_task(name="r", type="regression", columns=["a", "b"], label_column="y")
    assert (regression.transform, regression.target, regression.metrics) == (
        "similarity", "score", ("pearson", "spearman"))
    single = custom_task(name="r1", type="regression", columns=["a"], label_column="y")
    assert single.transform == "classification"
    choice = custom_task(name="mc", type="multiple_choice", format="jsonl", columns=["q", "a0", "a1", "a2"],
                         label_column="answer")
    assert (choice.target, choice.num_choices, choice.label_names) == ("choice", 3, ("0", "1", "2"))
    path = write(tmp_path / "mc.jsonl", '{"q": "2+2?", "a0": "3", "a1": "4", "a2": "5", "answer": 1}\n\n')
    assert read_examples(choice, path) == [Example(("2+2?", "3", "4", "5"), 1, f"{path}:1")]
    numbers = write(tmp_path / "n.tsv", "x\ty\nA\t10\nB\t2\nC\t1\n")
    numeric = infer_labels(custom_task(name="n", type="classification", columns=["x"], label_column="y"), numbers)
    assert numeric.label_names == ("1", "2", "10")
    no_header = custom_task(name="h", type="classification", format="tsv", header=False, columns=[1],
                            label_column=0, labels=["neg", "pos"])
    assert read_examples(no_header, write(tmp_path / "h.tsv", "pos\tnice\n")) == [
        Example(("nice",), 1, f"{tmp_path / 'h.tsv'}:1")]


def test_inconsistent_task_definitions_are_refused():
    bad = [
        dict(type="classification", columns=["a", "b"]),  # one text column
        dict(type="sentiment", columns=["a"]),
        dict(type="classification", columns=["a"], metrics=["pearson"]),
        dict(type="classification", columns=["a"], labels=["x", "y", "z"], metrics=["f1"]),
        dict(type="classification", columns=["a"], header=False, format="csv"),  # names without a header
        dict(type="multiple_choice", columns=["a", "b", "c"], labels=["1", "2", "3"]),
    ]
    for kwargs in bad:
        with pytest.raises(GenptError, match="task 'x'"):
            custom_task(name="x", **kwargs)


BAD_FILES = [  # (task, file name, contents, the message's expected words, the line it names)
    ("sst2", "missing_column.tsv", "text\tlabel\ngood\t1\n",
     "no column 'sentence' in the header; found text, label", 1),
    ("mrpc", "fields.tsv", "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\tA.\tB.\n0\t3\t4\tC.\n",
     "4 fields, expected 5", 3),
    ("qnli", "label.tsv",
     "index\tquestion\tsentence\tlabel\n0\tQ?\tS.\tentailment\n1\tQ?\tS.\tcontradiction\n",
     "unknown label 'contradiction'; expected one of entailment, not_entailment", 3),
    ("wnli", "empty_text.tsv", "index\tsentence1\tsentence2\tlabel\n0\tP.\t \t1\n",
     "column 'sentence2' holds ' '; expected non-empty text", 2),
    ("stsb", "nan.tsv", "sentence1\tsentence2\tscore\nA.\tB.\t3.2\nA.\tB.\tnan\n", "not finite", 3),
    ("stsb", "inf.tsv", "sentence1\tsentence2\tscore\nA.\tB.\tinf\n", "not finite", 2),
    ("stsb", "text_score.tsv", "sentence1\tsentence2\tscore\nA.\tB.\thigh\n", "'high' is not a number", 2),
    ("story_cloze", "answer.csv",
     "InputStoryid,InputSentence1,InputSentence2,InputSentence3,InputSentence4,RandomFifthSentenceQuiz1,"
     "RandomFifthSentenceQuiz2,AnswerRightEnding\nx,a,b,c,d,e,f,3\n",
     "answer '3' out of range; expected one of 1, 2", 2),
    ("sst2", "empty.tsv", "", "empty file", 1),
    ("cola", "blank.tsv", "\n\n", "empty file", 1),
    ("sst2", "header_only.tsv", "sentence\tlabel\n", "no examples", 1),
    ("cola", "no_label.tsv", "src\t1\t\tOk.\nsrc\t\t\tNo label.\n", "empty label", 2),
    ("cola", "narrow.tsv", "src\t1\tOk.\n", "no column 3; found 3 fields", 1),
    ("sst2", "utf8.tsv", "sentence\tlabel\nok\t1\n\xff\t0\n", "not UTF-8", 3),
]


@pytest.mark.parametrize(("task", "name", "text", "words", "line"), BAD_FILES, ids=[b[1] for b in BAD_FILES])
def test_bad_file_is_reported_with_its_name_and_line(tmp_path, task, name, text, words, line):
    path = tmp_path / name
    if "\xff" in text:
        path.write_bytes(text.replace("\xff", "@").encode().replace(b"@", b"\xff"))
    else:
        write(path, text)
    with pytest.raises(GenptError, match="^" + str(path).replace("\\", "\\\\")) as e:
        read_examples(builtin_task(task), path)
    message = str(e.value)
    assert f"{name}:{line}:" in message and words in message and "\n" not in message


def test_bad_jsonl_and_missing_files_are_reported_with_their_name(tmp_path):
    spec = custom_task(name="j", type="classification", columns=["text"], label_column="y", labels=["a", "b"])
    cases = {
        "notjson.jsonl": ('{"text": "x", "y": "a"}\n{text: 1}\n', "notjson.jsonl:2: not JSON"),
        "list.jsonl": ('["x", "a"]\n', "list.jsonl:1: a JSON list; expected an object"),
        "key.jsonl": ('{"text": "x", "y": "a"}\n{"txt": "x", "y": "a"}\n',
                      "key.jsonl:2: no column 'text'; found txt, y"),
        "number.jsonl": ('{"text": 5, "y": "a"}\n', "number.jsonl:1: column 'text' holds 5; expected"),
    }
    for name, (text, words) in cases.items():
        with pytest.raises(GenptError, match=words):
            read_examples(spec, write(tmp_path / name, text))
    with pytest.raises(GenptError, match=r"nowhere\.jsonl: file not found"):
        read_examples(spec, tmp_path / "nowhere.jsonl")
    with pytest.raises(GenptError, match=r"data\.parquet: cannot tell the format"):
        read_examples(spec, tmp_path / "data.parquet")
    with pytest.raises(GenptError, match=r"bad\.csv:2: bad CSV"):
        csv_spec = replace(spec, format="csv", columns=("t",))
        read_examples(csv_spec, write(tmp_path / "bad.csv", 't,y\n"open,a\n'))


def test_task_file_mistakes_name_the_file_and_line(tmp_path):
    base = 'name = "t"\ntype = "classification"\ncolumns = ["text"]\n'
    cases = {
        "unknown.toml": (base + 'label_colum = "y"\n', "unknown.toml:4: unknown key 'label_colum'"),
        "type.toml": ('name = "t"\ntype = "classification"\ncolumns = "text"\n',
                      "type.toml:3: columns = 'text' has the wrong type; expected a list"),
        "missing.toml": ('name = "t"\ncolumns = ["text"]\n', "missing.toml:1: missing key 'type'"),
        "syntax.toml": (base + "labels = [\n", "syntax.toml:4: not valid TOML"),
        "syntax2.toml": ('name = "t"\ntype = classification\n', "syntax2.toml:2: not valid TOML"),
        "invalid.toml": (base + 'metrics = ["bleu"]\n', "invalid.toml: task 't': metrics"),
    }
    for name, (text, words) in cases.items():
        with pytest.raises(GenptError, match=words):
            task_from_toml(write(tmp_path / name, text))
    with pytest.raises(GenptError, match=r"none\.toml: task file not found"):
        task_from_toml(tmp_path / "none.toml")
