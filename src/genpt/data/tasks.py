"""Labeled tasks: the built-in GLUE / SciTail / Story Cloze specs and the user's own, from flags or a TOML file.

A task is a `TaskSpec`: how the inputs become token sequences (`transform`, the paper's Figure 1),
what is predicted (`target`), and where the fields sit in the file (`format`, `columns`,
`label_column`). genpt.data.readers turns a file into `Example`s.

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

import re
import tomllib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from genpt.errors import GenptError
from genpt.metrics import METRICS

TRANSFORMS = ("classification", "entailment", "similarity", "multiple_choice")
TARGETS = ("class", "score", "choice")
FORMATS = ("tsv", "csv", "jsonl", "auto")
TYPES = ("classification", "entailment", "similarity", "multiple_choice", "regression")
_TEXTS_PER_TRANSFORM = {"classification": 1, "entailment": 2, "similarity": 2}


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
    return spec


def task_from_toml(path: str | Path) -> TaskSpec:
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
    return spec


def check_task_fits(task: TaskSpec, trained: TaskSpec, n_out: int) -> TaskSpec:
    """`task` as a model fine-tuned on `trained` (a head of `n_out` outputs) reads it, labels matched by name.

    Both must lay out inputs and targets alike. Class labels are matched by name, never by position: a
    file with fewer labels than the model is fine; a label the model never learned, or more labels than
    its head has outputs, is refused.
    """
    if task.transform != trained.transform or task.target != trained.target:
        raise GenptError(f"--task {task.name} does not fit the model, which was fine-tuned on {trained.name}")
    if task.target != "class" or task.label_names == trained.label_names:
        return task
    if len(task.label_names) > n_out:
        raise GenptError(f"--task {task.name}: {len(task.label_names)} labels {list(task.label_names)}, but the "
                         f"model's head has {n_out} outputs ({', '.join(trained.label_names)})")
    unknown = [name for name in task.label_names if name not in trained.label_names]
    if unknown:
        raise GenptError(f"--task {task.name}: label(s) {unknown} are not among the model's labels "
                         f"({', '.join(trained.label_names)}); labels are matched by name")
    return replace(task, label_names=trained.label_names)
