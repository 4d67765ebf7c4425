"""Reading a text corpus: files, folders and globs of .txt / .jsonl (optionally .gz) as documents.

A large document arrives as several pieces of about a megabyte, cut just before a line break, where
the byte-level pre-tokenizer always has a boundary anyway, so pieces encode exactly like the whole
text and a 10 GB file never sits in memory.
"""

from __future__ import annotations

import codecs
import gzip
import json
import zlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from genpt.errors import GenptError

TEXT_SUFFIXES = (".txt", ".text", ".md")
JSONL_SUFFIXES = (".jsonl",)
PIECE_CHARS = 1 << 20  # a document longer than this is delivered in pieces of about this size
_READ_BYTES = 1 << 20



@dataclass(frozen=True)
class Document:
    """Text of one document, or one piece of it.

    A long document arrives as consecutive pieces with the same `source` and `index`; `last` marks
    the piece that ends it (a short document is a single piece with `last=True`). `index` is the
    document's position in its file: 0 for a text file, the line number minus one for .jsonl.
    """

    source: str
    text: str
    index: int = 0
    last: bool = True


def _suffix(path: Path) -> str:
    """The extension that decides how a file is read, looking through a trailing .gz."""
    name = path.name.lower()
    return Path(name[:-3] if name.endswith(".gz") else name).suffix


def _supported(path: Path) -> bool:
    return _suffix(path) in TEXT_SUFFIXES + JSONL_SUFFIXES


def expand_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """Files named directly, all text files under folders (recursively, sorted), and glob matches.

    Hidden files and folders inside a given folder are skipped. A name that matches nothing is an
    error rather than silently training on less data than the user meant.
    """
    if isinstance(inputs, str | Path):
        inputs = [inputs]
    wanted = ", ".join(TEXT_SUFFIXES + JSONL_SUFFIXES) + " (optionally .gz)"
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files = _files_under(path)
            if not files:
                raise GenptError(f"{path}: folder holds no text files; expected {wanted}")
        elif path.is_file():
            if not _supported(path):
                raise GenptError(f"{path}: unsupported file type; expected {wanted}")
            files = [path]
        elif any(c in str(item) for c in "*?["):
            matches = _glob(str(item))
            files = [f for m in matches for f in (_files_under(m) if m.is_dir() else [m]) if _supported(f)]
            if not files:
                raise GenptError(f"{item}: pattern matches no text files; expected {wanted}")
        else:
            raise GenptError(f"{path}: no such file or folder")
        found.extend(files)
    seen: set[Path] = set()
    unique = []
    for f in found:  # a file named twice (say, by a folder and a glob) is read once
        if f.resolve() not in seen:
            seen.add(f.resolve())
            unique.append(f)
    return unique


def _glob(pattern: str) -> list[Path]:
    """Matches of `pattern`, sorted; `**` does not descend into symlinked folders, so a link loop cannot hang it.

    (The standard `glob` module follows such links under `**` and never ends on `a/loop -> ..`.)
    Hidden names match only a pattern that names a dot, as in the shell.
    """
    parts = Path(pattern).parts
    first = next(i for i, part in enumerate(parts) if any(c in part for c in "*?["))
    base, rest = Path(*parts[:first]) if first else Path("."), parts[first:]
    hidden_wanted = any(part.startswith(".") for part in rest)
    matches = []
    for match in base.glob("/".join(rest)):
        below = match.relative_to(base).parts
        if hidden_wanted or not any(name.startswith(".") for name in below):
            matches.append(match if first else Path(*below))
    return sorted(matches)


def _files_under(folder: Path) -> list[Path]:
    """Supported files under `folder`, sorted; hidden ones (.git, .cache, ...) are left out."""
    files = (p for p in folder.rglob("*") if p.is_file() and _supported(p))
    return sorted(p for p in files if not any(part.startswith(".") for part in p.relative_to(folder).parts))


def iter_documents(
    inputs: Sequence[str | Path],
    *,
    text_field: str = "text",
    strip_gutenberg: bool = False,
) -> Iterator[Document]:
    """Stream the documents of `inputs`: each text file is one document, each .jsonl line another.

    A document longer than PIECE_CHARS arrives as several `Document` pieces; act on a document's end
    (e.g. append end-of-text) only when `doc.last` is true.

    With `strip_gutenberg`, Project Gutenberg headers and licences are cut off each document; that
    needs a whole document in memory (books are a few MB), so large files are only streamed without it.
    """
    any_text = False
    files = expand_inputs(inputs)
    for path in files:
        jsonl = _suffix(path) in JSONL_SUFFIXES
        for index, text in _jsonl_documents(path, text_field) if jsonl else [(0, _decoded_blocks(path))]:
            if strip_gutenberg:
                from genpt.data.gutenberg import strip_gutenberg as strip

                text = strip(text if isinstance(text, str) else "".join(text))
            for doc in _pieces(str(path), index, text):
                any_text = any_text or (doc.text != "" and not doc.text.isspace())
                yield doc
    if not any_text:
        shown = ", ".join(str(f) for f in files[:3]) + (", ..." if len(files) > 3 else "")
        raise GenptError(f"no text in {shown}: every document is empty")


def _pieces(source: str, index: int, text: Iterable[str] | str) -> Iterator[Document]:
    """Cut a document (a string, or a stream of string blocks) into pieces of about PIECE_CHARS."""
    pending = ""
    for block in [text] if isinstance(text, str) else text:
        pending += block
        while len(pending) > PIECE_CHARS:
            cut = _cut_point(pending, PIECE_CHARS)
            yield Document(source, pending[:cut], index, last=False)
            pending = pending[cut:]
    yield Document(source, pending, index, last=True)


def _cut_point(text: str, limit: int) -> int:
    """The last position <= limit just before a line break that follows a non-space character.

    The byte-level pre-tokenizer never joins a non-space character with following whitespace, so
    cutting there gives the same tokens as encoding the whole text. Without such a point (one huge
    line) the cut falls at `limit`: still exact text, only a token or two may differ there.
    """
    end = limit
    while (newline := text.rfind("\n", 0, end)) > 0:
        cut = newline - 1 if text[newline - 1] == "\r" else newline
        if cut > 0 and not text[cut - 1].isspace():
            return cut
        end = cut
    return limit


def _open_binary(path: Path) -> BinaryIO:
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


@contextmanager
def _read_errors(path: Path) -> Iterator[None]:
    """Turn the ways a (compressed) file can fail to read into one GenptError naming it."""
    try:
        yield
    except (OSError, EOFError, zlib.error) as exc:
        raise GenptError(f"{path}: cannot read ({exc})") from None


def _utf8_error(path: Path, offset: int, line: int) -> GenptError:
    where = "of the decompressed text " if path.name.lower().endswith(".gz") else ""
    return GenptError(f"{path}: not UTF-8 at byte {offset} {where}(line {line}); "
                      "convert the file to UTF-8 (e.g. `iconv -f latin1 -t utf-8`)")


def _decoded_blocks(path: Path) -> Iterator[str]:
    """The file's text in blocks of about a megabyte; invalid UTF-8 is reported with byte offset and line."""
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    consumed = lines = 0
    first = True
    with _read_errors(path), _open_binary(path) as stream:
        while True:
            data = stream.read(_READ_BYTES)
            held = decoder.getstate()[0]  # bytes of a character split across reads
            try:
                block = decoder.decode(data, final=not data)
            except UnicodeDecodeError as exc:
                line = lines + (held + data)[: exc.start].count(b"\n") + 1
                raise _utf8_error(path, consumed - len(held) + exc.start, line) from None
            consumed += len(data)
            lines += block.count("\n")
            if first and block.startswith("\ufeff"):  # a byte-order mark is not part of the text
                block = block[1:]
            first = first and not block
            if block:
                yield block
            if not data:
                return


def _jsonl_documents(path: Path, text_field: str) -> Iterator[tuple[int, str]]:
    """One document per non-blank line, taken from the string field `text_field`."""
    offset = 0
    with _read_errors(path), _open_binary(path) as stream:
        for number, raw in enumerate(stream, 1):
            start, offset = offset, offset + len(raw)
            if not raw.strip():
                continue
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise _utf8_error(path, start + exc.start, number) from None
            if number == 1:
                line = line.removeprefix("\ufeff")
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise GenptError(f"{path}:{number}: invalid JSON ({exc.msg} at column {exc.colno}); "
                                 "expected one JSON object per line") from None
            text = record.get(text_field) if isinstance(record, dict) else None
            if not isinstance(text, str):
                fields = ", ".join(record) if isinstance(record, dict) else type(record).__name__
                raise GenptError(f"{path}:{number}: expected a string field {text_field!r} "
                                 f"(found: {fields}); choose the field with --text-field")
            yield number - 1, text


def document_keys(files: list[Path]) -> Iterator[tuple[str, int]]:
    """(file name, index) of every document, as iter_documents numbers them, without decoding text."""
    for path in files:
        if _suffix(path) not in JSONL_SUFFIXES:
            yield path.name, 0
            continue
        with _read_errors(path), _open_binary(path) as stream:
            for number, raw in enumerate(stream, 1):
                if raw.strip():
                    yield path.name, number - 1
