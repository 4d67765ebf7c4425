"""Labeled task readers: built-in GLUE / SciTail / Story Cloze formats and user files, every bad row named.

A task is a `TaskSpec`: how the inputs become token sequences (`transform`, the paper's Figure 1),
what is predicted (`target`), and where the fields sit in the file (`format`, `columns`,
`label_column`). `read_examples` turns a file into `Example`s.

Formats. ``tsv`` splits every line on tabs with no quoting at all: GLUE's files hold bare ``"``
characters, and csv-style quoting would swallow rows. ``csv`` is real CSV (quotes, embedded commas and
newlines). ``jsonl`` is one JSON object a line, columns being keys. ``auto`` picks by the file's
extension (.tsv/.txt, .csv, .jsonl/.ndjson). Files are UTF-8; a leading byte-order mark is ignored
(GLUE's MRPC files start with one); blank lines are skipped.

Multiple choice: the last `num_choices` columns are the answers; any columns before them are joined
with single spaces into the context (Story Cloze's four sentences, as GPT-1's code did). Its labels
are the strings that name the answers, in order (Story Cloze: "1", "2"; default "0", "1", ...).

A task file (TOML) describes a custom task without code; the keys are those of `custom_task`:

    name = "reviews"              # required
    type = "classification"       # required: classification entailment similarity multiple_choice regression
    columns = ["title", "body"]   # required: text columns in order (0-based integers if no header)
    label_column = "stars"        # omit for unlabeled files
    labels = ["bad", "good"]      # class labels in id order; default: the training file's values, sorted
    format = "csv"                # tsv | csv | jsonl; default: by each file's extension
    header = true                 # tsv/csv: the first row names the columns
    num_choices = 4               # multiple_choice; default len(columns) - 1
    metrics = ["accuracy", "f1"]  # default accuracy (pearson, spearman for regression); the first picks
                                  # the best epoch
    ignore_labels = ["-"]         # label values whose rows are left out of labeled data
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import re
import tomllib
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from genpt.errors import GenptError
from genpt.metrics import METRICS

TRANSFORMS = ("classification", "entailment", "similarity", "multiple_choice")
TARGETS = ("class", "score", "choice")
FORMATS = ("tsv", "csv", "jsonl", "auto")
TYPES = ("classification", "entailment", "similarity", "multiple_choice", "regression")
_TEXTS_PER_TRANSFORM = {"classification": 1, "entailment": 2, "similarity": 2}
_EXTENSIONS = {".tsv": "tsv", ".txt": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


@dataclass(frozen=True)
class TaskSpec:
    """What a task predicts and where its inputs and labels sit in a file. Saved as task.json."""

    name: str
    transform: str  # one of TRANSFORMS
    target: str  # "class" (cross-entropy over label_names), "score" (regression), "choice" (answer index)
    label_names: tuple[str, ...] = ()  # labels (answer names for "choice") as in the file, in id order
    num_choices: int = 0  # multiple_choice only
    metrics: tuple[str, ...] = ("accuracy",)  # the first one picks the best epoch
    format: str = "tsv"  # tsv | csv | jsonl | auto
    header: bool = True
    columns: tuple[str | int, ...] = ()  # text columns: names (header / jsonl) or 0-based indices
    label_column: str | int | None = None  # None: unlabeled (prediction input)
    ignore_labels: tuple[str, ...] = ()  # rows with these labels are dropped (SNLI's "-": no gold label)

    def __post_init__(self) -> None:
        for name in ("label_names", "metrics", "columns", "ignore_labels"):  # lists from JSON/TOML
            object.__setattr__(self, name, tuple(getattr(self, name)))
        self._validate()

    def _validate(self) -> None:
        def bad(what: str) -> GenptError:
            return GenptError(f"task {self.name!r}: {what}")

        for name, allowed in (("transform", TRANSFORMS), ("target", TARGETS), ("format", FORMATS)):
            if getattr(self, name) not in allowed:
                raise bad(f"{name} {getattr(self, name)!r} is not one of {', '.join(allowed)}")
        if (self.target == "choice") != (self.transform == "multiple_choice"):
            raise bad(f"target {self.target!r} does not fit transform {self.transform!r}: expected "
                      + ("'choice'" if self.transform == "multiple_choice" else "'class' or 'score'"))
        if self.transform == "multiple_choice":
            if self.num_choices < 2 or len(self.columns) < self.num_choices + 1:
                raise bad(f"multiple choice needs num_choices >= 2 and a context column before the answers;"
                          f" got num_choices={self.num_choices} and {len(self.columns)} column(s)")
        elif len(self.columns) != _TEXTS_PER_TRANSFORM[self.transform]:
            raise bad(f"the {self.transform} transform takes {_TEXTS_PER_TRANSFORM[self.transform]} text "
                      f"column(s), got {len(self.columns)}: {list(self.columns)}")
        keys = [k for k in (*self.columns, self.label_column) if k is not None]
        kind = str if self.format == "jsonl" else int if self.format != "auto" and not self.header else object
        if not all(isinstance(k, kind) for k in keys):
            raise bad(f"columns {keys} should be " + ("jsonl key names" if kind is str else
                                                      "0-based indices: the files have no header row"))
        if len(set(self.label_names)) != len(self.label_names) or len(self.label_names) == 1:
            raise bad(f"labels must be two or more distinct values, got {list(self.label_names)}")
        if self.target == "choice" and len(self.label_names) != self.num_choices:
            raise bad(f"{self.num_choices} choices need {self.num_choices} answer labels, "
                      f"got {list(self.label_names)}")
        unknown = [m for m in self.metrics if m not in METRICS]
        wrong = [m for m in self.metrics if (m in ("pearson", "spearman")) != (self.target == "score")]
        if not self.metrics or unknown or wrong:
            raise bad(f"metrics {list(self.metrics)} do not fit target {self.target!r}: expected "
                      + ("pearson, spearman" if self.target == "score" else "accuracy, f1, mcc"))
        if "f1" in self.metrics and self.label_names and len(self.label_names) != 2:
            raise bad(f"f1 is binary (positive class id 1) but there are {len(self.label_names)} labels")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TaskSpec:
        known = {f.name for f in fields(cls)}
        if unknown := sorted(set(d) - known):
            raise GenptError(f"task: unknown key(s) {unknown}; expected some of {sorted(known)}")
        return cls(**d)


@dataclass(frozen=True)
class Example:
    """One labeled (or unlabeled) input: the texts in transform order, and where it came from."""

    texts: tuple[str, ...]  # (text,) | (premise, hypothesis) | (a, b) | (context, answer_1, ..., answer_k)
    label: int | float | None  # class id, score, answer index; None when the file has no labels
    source: str  # "file:line"


_NLI3 = ("contradiction", "entailment", "neutral")
_STORY = (*(f"InputSentence{i}" for i in range(1, 5)), "RandomFifthSentenceQuiz1", "RandomFifthSentenceQuiz2")
BUILTIN_TASKS: dict[str, TaskSpec] = {t.name: t for t in (
    TaskSpec("sst2", "classification", "class", ("0", "1"), columns=("sentence",), label_column="label"),
    TaskSpec("cola", "classification", "class", ("0", "1"), metrics=("mcc", "accuracy"), header=False,
             columns=(3,), label_column=1),  # source, label, original mark, sentence
    TaskSpec("mrpc", "similarity", "class", ("0", "1"), metrics=("f1", "accuracy"),
             columns=("#1 String", "#2 String"), label_column="Quality"),
    TaskSpec("stsb", "similarity", "score", metrics=("pearson", "spearman"),
             columns=("sentence1", "sentence2"), label_column="score"),  # score in 0..5
    TaskSpec("wnli", "entailment", "class", ("0", "1"), columns=("sentence1", "sentence2"),
             label_column="label"),
    TaskSpec("rte", "entailment", "class", ("entailment", "not_entailment"),
             columns=("sentence1", "sentence2"), label_column="label"),
    TaskSpec("qnli", "entailment", "class", ("entailment", "not_entailment"),
             columns=("question", "sentence"), label_column="label"),
    TaskSpec("mnli", "entailment", "class", _NLI3, columns=("sentence1", "sentence2"),
             label_column="gold_label", ignore_labels=("-",)),
    TaskSpec("snli", "entailment", "class", _NLI3, columns=("sentence1", "sentence2"),
             label_column="gold_label", ignore_labels=("-",)),
    TaskSpec("qqp", "similarity", "class", ("0", "1"), metrics=("f1", "accuracy"),
             columns=("question1", "question2"), label_column="is_duplicate"),
    TaskSpec("scitail", "entailment", "class", ("entails", "neutral"), header=False,
             columns=(0, 1), label_column=2),  # SciTail's tsv_format: premise, hypothesis, label
    TaskSpec("story_cloze", "multiple_choice", "choice", ("1", "2"), num_choices=2, format="csv",
             columns=_STORY, label_column="AnswerRightEnding"),
)}


def builtin_task(name: str) -> TaskSpec:
    """A built-in task by name, ignoring case, '-' and '_' ("SST-2", "sst2", "StoryCloze")."""
    def plain(s: str) -> str:
        return s.lower().replace("-", "").replace("_", "")

    for key, spec in BUILTIN_TASKS.items():
        if plain(key) == plain(name):
            return spec
    raise GenptError(f"unknown task {name!r}: expected one of {', '.join(BUILTIN_TASKS)}, a .toml task file, "
                     "or a custom task (type and columns)")


def custom_task(*, name: str, type: str, format: str | None = None, columns: Sequence[str | int],
                label_column: str | int | None = None, labels: Sequence[str] | None = None,
                header: bool = True, num_choices: int = 0, metrics: Sequence[str] | None = None,
                ignore_labels: Sequence[str] = (), train_file: str | Path | None = None) -> TaskSpec:
    """A task on the user's own files. Class labels not given are read from `train_file` (sorted)."""
    if type not in TYPES:
        raise GenptError(f"task {name!r}: type {type!r} is not one of {', '.join(TYPES)}")
    columns = tuple(columns)
    transform = {"regression": "classification" if len(columns) == 1 else "similarity"}.get(type, type)
    target = {"regression": "score", "multiple_choice": "choice"}.get(type, "class")
    if type == "multiple_choice":
        num_choices = num_choices or len(columns) - 1
        labels = labels or [str(i) for i in range(num_choices)]
    metrics = metrics or (("pearson", "spearman") if target == "score" else ("accuracy",))
    spec = TaskSpec(name=name, transform=transform, target=target, num_choices=num_choices, metrics=metrics,
                    label_names=tuple(str(x) for x in labels or ()) if target != "score" else (),
                    format=format or "auto", header=header, columns=columns, label_column=label_column,
                    ignore_labels=ignore_labels)
    return spec if train_file is None else infer_labels(spec, train_file)


def infer_labels(spec: TaskSpec, train_file: str | Path) -> TaskSpec:
    """`spec` with class labels, where it has none, from `train_file`'s distinct values in sorted order."""
    if spec.target != "class" or spec.label_names:
        return spec
    if spec.label_column is None:
        raise GenptError(f"task {spec.name!r}: a label column is needed to read labels from {train_file}")
    values = {raw for _, _, raw in _fields(spec, Path(train_file), True) if raw not in spec.ignore_labels}
    if len(values) < 2:
        raise GenptError(f"{train_file}: column {spec.label_column!r} holds {len(values)} distinct label(s) "
                         f"{sorted(values)}; a classifier needs two or more")
    try:
        names = sorted(values, key=float)  # "2" before "10"
    except ValueError:
        names = sorted(values)
    return replace(spec, label_names=tuple(names))


def task_from_toml(path: str | Path, *, train_file: str | Path | None = None) -> TaskSpec:
    """A custom task described by a TOML file (keys in this module's docstring)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        table = tomllib.loads(text)
    except FileNotFoundError:
        raise GenptError(f"{path}: task file not found") from None
    except tomllib.TOMLDecodeError as e:  # Python < 3.14 puts the position only in the message
        at = re.search(r"at line (\d+)", str(e))
        line = at[1] if at else len(text.splitlines()) or 1  # else it is "at end of document"
        raise GenptError(f"{path}:{line}: not valid TOML ({e})") from None
    allowed = ("name", "type", "format", "columns", "label_column", "labels", "header", "num_choices",
               "metrics", "ignore_labels")

    def where(key: str) -> str:  # tomllib keeps no positions: find the key's line ourselves
        line = next((n for n, s in enumerate(text.splitlines(), 1) if s.split("=")[0].strip() == key), 1)
        return f"{path}:{line}"

    for key in table:
        if key not in allowed:
            raise GenptError(f"{where(key)}: unknown key {key!r}; expected one of {', '.join(allowed)}")
    for key in ("name", "type", "columns"):
        if key not in table:
            raise GenptError(f"{path}:1: missing key {key!r} (a task file needs name, type and columns)")
    kinds = {"header": bool, "num_choices": int, "label_column": (str, int)} | dict.fromkeys(
        ("columns", "labels", "metrics", "ignore_labels"), list)
    for key, value in table.items():
        if not isinstance(value, kinds.get(key, str)):
            raise GenptError(f"{where(key)}: {key} = {value!r} has the wrong type; expected a "
                             + getattr(kinds.get(key, str), "__name__", "name or a 0-based index"))
    try:
        spec = custom_task(**table)
    except GenptError as e:
        raise GenptError(f"{path}: {e}") from None
    return spec if train_file is None else infer_labels(spec, train_file)


def read_examples(spec: TaskSpec, path: str | Path, *, require_labels: bool = True) -> list[Example]:
    """The examples in `path`. Without `require_labels`, labels are read where the file has them."""
    if require_labels and spec.label_column is None:
        raise GenptError(f"task {spec.name!r} has no label column, so {path} cannot be read as labeled data")
    if spec.target != "score" and not spec.label_names:
        raise GenptError(f"task {spec.name!r} lists no labels: give them (labels = [...]) or a training file "
                         "to read them from")
    path = Path(path)
    ids = {name: i for i, name in enumerate(spec.label_names)}
    examples = []
    for source, texts, raw in _fields(spec, path, require_labels):
        label: int | float | None = None
        if raw is not None and raw not in spec.ignore_labels:
            label = _score(raw, source) if spec.target == "score" else ids.get(raw)
            if label is None:
                what = f"answer {raw!r} out of range" if spec.target == "choice" else f"unknown label {raw!r}"
                raise GenptError(f"{source}: {what}; expected one of {', '.join(spec.label_names)}")
        elif raw is not None and require_labels:
            continue  # an ignored label: no gold answer to learn from or score against
        if spec.transform == "multiple_choice":
            k = spec.num_choices
            texts = (" ".join(texts[:-k]), *texts[-k:])
        examples.append(Example(texts, label, source))
    if not examples:
        raise GenptError(f"{path}:1: no examples, only a header or ignored labels; expected rows with "
                         f"columns {list(spec.columns)}")
    return examples


def story_cloze_split(examples: Sequence[Example], n_valid: int = 374,
                      seed: int = 3535999445) -> tuple[list[Example], list[Example]]:
    """GPT-1's train/dev split of the Story Cloze validation stories (1,497 / 374 from 1,871).

    finetune-transformer-lm's datasets.py called sklearn's train_test_split on the stories in file
    order with test_size=n_valid and its module seed 3535999445; doing the same gives the same split.
    """
    from sklearn.model_selection import train_test_split  # slow import, needed only here

    if not 0 < n_valid < len(examples):
        raise GenptError(f"n_valid={n_valid}: expected 1 to {len(examples) - 1} for {len(examples)} stories")
    train, dev = train_test_split(list(examples), test_size=n_valid, random_state=seed)
    return list(train), list(dev)


def _fields(spec: TaskSpec, path: Path, require_labels: bool) -> Iterator[tuple[str, tuple, str | None]]:
    """("file:line", texts, raw label or None) per data row, with columns and texts checked."""
    fmt = spec.format if spec.format != "auto" else _EXTENSIONS.get(path.suffix.lower())
    if fmt is None:
        raise GenptError(f"{path}: cannot tell the format from the extension {path.suffix!r}; expected "
                         f"{', '.join(_EXTENSIONS)} or a format (tsv, csv, jsonl)")
    if not path.is_file():
        raise GenptError(f"{path}: file not found")
    rows = _rows(path, fmt)
    first = next(rows, None)
    if first is None:
        raise GenptError(f"{path}:1: empty file; expected {fmt} rows with columns {list(spec.columns)}")
    keys: list = [*spec.columns, spec.label_column]  # jsonl keys, or a table's field indices once known
    header = None
    if fmt != "jsonl" and spec.header:
        header = [name.strip() for name in first[1]]
        keys = [_index(c, header) for c in keys]
        wanted = spec.columns if not require_labels else (*spec.columns, spec.label_column)
        if missing := [c for c in wanted if _index(c, header) is None]:
            raise GenptError(f"{path}:1: no column {missing[0]!r} in the header; found {', '.join(header)}")
    else:
        rows = itertools.chain([first], rows)
    width = len(header) if header else None
    for line, row in rows:
        where = f"{path}:{line}"
        if isinstance(row, dict):
            found, values = ", ".join(row) or "no keys", [row.get(k) for k in keys]
        else:
            width = width or len(row)
            if len(row) != width:
                how = "tab-separated, no quoting" if fmt == "tsv" else "comma-separated"
                raise GenptError(f"{where}: {len(row)} fields, expected {width} ({how})")
            found = ", ".join(header) if header else f"{width} fields, indices 0..{width - 1}"
            values = [row[k] if isinstance(k, int) and 0 <= k < width else None for k in keys]
        *texts, raw = values
        for column, value in zip(spec.columns, texts, strict=True):
            if value is None:
                raise GenptError(f"{where}: no column {column!r}; found {found}")
            if not isinstance(value, str) or not value.strip():
                raise GenptError(f"{where}: column {column!r} holds {value!r}; expected non-empty text")
        if raw is None and require_labels:
            raise GenptError(f"{where}: no label column {spec.label_column!r}; found {found}")
        if raw is not None:
            raw = (raw if isinstance(raw, str) else json.dumps(raw)).strip()
            if not raw and require_labels:
                raise GenptError(f"{where}: empty label in column {spec.label_column!r}; expected a label")
        yield where, tuple(texts), raw or None


def _index(column: str | int | None, header: list[str]) -> int | None:
    """Where `column` (a header name or a 0-based index) sits in rows of len(header) fields."""
    if isinstance(column, int):
        return column if 0 <= column < len(header) else None
    return header.index(column) if column in header else None


def _rows(path: Path, fmt: str) -> Iterator[tuple[int, list[str] | dict]]:
    """(line number, fields) for each non-blank row; a JSON row is a dict of columns."""
    if fmt == "csv":
        reader = csv.reader(_lines(path), strict=True)
        while True:
            start = reader.line_num + 1  # a quoted field may span lines: report where the row begins
            try:
                row = next(reader, None)
            except csv.Error as e:
                raise GenptError(f"{path}:{start}: bad CSV ({e}); expected fields quoted with \"") from None
            if row is None:
                return
            if any(field.strip() for field in row):
                yield start, row
    for n, line in enumerate(_lines(path), 1):
        if not line.strip():
            continue
        if fmt == "tsv":
            yield n, line.rstrip("\n").removesuffix("\r").split("\t")
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise GenptError(f"{path}:{n}: not JSON ({e.msg}); expected one JSON object a line") from None
        if not isinstance(row, dict):
            raise GenptError(f"{path}:{n}: a JSON {type(row).__name__}; expected an object of columns")
        yield n, row


def _lines(path: Path) -> Iterator[str]:
    """Decoded lines with their endings; a bad byte sequence is reported by line."""
    with open(path, "rb") as f:  # binary: only b"\n" ends a line, so a stray \r or U+2028 in text is kept
        for n, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise GenptError(f"{path}:{n}: not UTF-8 text ({e.reason} at byte {e.start})") from None
            yield line.removeprefix("\ufeff") if n == 1 else line


def _score(raw: str, where: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise GenptError(f"{where}: score {raw!r} is not a number; expected a finite number") from None
    if not math.isfinite(value):
        raise GenptError(f"{where}: score {raw!r} is not finite; expected a finite number")
    return value

