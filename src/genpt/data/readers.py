"""Labeled task files to `Example`s, every bad row named by file and line.

Formats. ``tsv`` splits every line on tabs with no quoting at all: GLUE's files hold bare ``"``
characters, and csv-style quoting would swallow rows. ``csv`` is real CSV (quotes, embedded commas and
newlines). ``jsonl`` is one JSON object a line, columns being keys. ``auto`` picks by the file's
extension (.tsv/.txt, .csv, .jsonl/.ndjson). Files are UTF-8; a leading byte-order mark is ignored
(GLUE's MRPC files start with one); blank lines are skipped.

Multiple choice: the last `num_choices` columns are the answers; any columns before them are joined
with single spaces into the context (Story Cloze's four sentences, as GPT-1's code did). Its labels
are the strings that name the answers, in order (Story Cloze: "1", "2"; default "0", "1", ...).
"""

from __future__ import annotations

import csv
import itertools
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

from genpt.data.tasks import Example, TaskSpec
from genpt.errors import GenptError

_EXTENSIONS = {".tsv": "tsv", ".txt": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


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

