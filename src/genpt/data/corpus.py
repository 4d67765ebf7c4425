"""Text corpus -> token shards on disk -> (B, T) windows for the language model.

Three steps, in the order data flows:

1. `iter_documents` streams documents out of .txt / .jsonl files (optionally .gz). A large document
   arrives as several pieces of about a megabyte, cut just before a line break, where the byte-level
   pre-tokenizer always has a boundary anyway, so pieces encode exactly like the whole text and a
   10 GB file never sits in memory.
2. `prepare` encodes the pieces in worker processes (in order, so the output does not depend on the
   number of workers) and writes raw little-endian token ids into shard files plus `meta.json`.
3. `TokenShards` memory-maps a split of those files; `LMBatches` cuts it into windows whose order
   is a pure function of (seed, batch index), so a resumed run sees exactly the same data.
"""

from __future__ import annotations

import codecs
import glob
import gzip
import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import struct
import time
import uuid
import zlib
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np
import torch
from tqdm import tqdm

from genpt.errors import GenptError

if TYPE_CHECKING:
    from genpt.tokenizer import Tokenizer

log = logging.getLogger(__name__)

TEXT_SUFFIXES = (".txt", ".text", ".md")
JSONL_SUFFIXES = (".jsonl",)
FORMAT = "genpt-shards"
FORMAT_VERSION = 1
PIECE_CHARS = 1 << 20  # a document longer than this is delivered in pieces of about this size
_READ_BYTES = 1 << 20
_COPY_TOKENS = 1 << 24
_IN_FLIGHT_PER_WORKER = 2
# Below this much text, workers=0 encodes in-process: each spawned worker imports genpt (and so
# torch), which takes longer than encoding a few MB (about 3 MB per CPU-second).
_POOL_MIN_BYTES = 8 << 20


# ---------------------------------------------------------------------------------------------
# Reading documents
# ---------------------------------------------------------------------------------------------


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
            matches = sorted(Path(p) for p in glob.glob(str(item), recursive=True))
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


# ---------------------------------------------------------------------------------------------
# Writing shards
# ---------------------------------------------------------------------------------------------


@dataclass
class PrepareStats:
    """What `prepare` did; bytes_read counts the UTF-8 text that was encoded."""

    documents: int
    train_tokens: int
    val_tokens: int
    bytes_read: int
    seconds: float
    output_dir: Path

    @property
    def mb_per_s(self) -> float:
        return self.bytes_read / max(self.seconds, 1e-9) / 1e6


def _split_hash(seed: int, name: str, index: int) -> float:
    """A number in [0, 1) that decides a document's split, stable across runs and machines."""
    digest = hashlib.blake2b(f"{seed}\0{name}\0{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2.0**64


@dataclass
class _SplitPlan:
    """Which split each document goes to, decided before any encoding so it can stream.

    A document goes to val when its hash falls below val_fraction. If that puts no document in val
    (or none in train), the one with the lowest (highest) hash is moved, so both splits exist. A
    corpus of one document instead gives the tail of its tokens to val.
    """

    seed: int
    val_fraction: float
    single: bool = False  # the corpus is one document
    forced: tuple[str, int, str] | None = None  # (file name, index, split)

    @classmethod
    def make(cls, files: list[Path], seed: int, val_fraction: float) -> _SplitPlan:
        if val_fraction == 0:
            return cls(seed, val_fraction)
        n = n_val = 0
        lowest = highest = None
        for name, index in _document_keys(files):
            key = (_split_hash(seed, name, index), name, index)
            n += 1
            n_val += key[0] < val_fraction
            if 0 < n_val < n:  # both splits have a document already: the hash alone decides
                return cls(seed, val_fraction)
            lowest = key if lowest is None else min(lowest, key)
            highest = key if highest is None else max(highest, key)
        if n == 1:
            return cls(seed, val_fraction, single=True)
        if n >= 2 and n_val == 0:
            return cls(seed, val_fraction, forced=(lowest[1], lowest[2], "val"))
        if n >= 2 and n_val == n:
            return cls(seed, val_fraction, forced=(highest[1], highest[2], "train"))
        return cls(seed, val_fraction)

    def split_of(self, name: str, index: int) -> str:
        if self.forced is not None and self.forced[:2] == (name, index):
            return self.forced[2]
        if self.single:
            return "train"
        return "val" if _split_hash(self.seed, name, index) < self.val_fraction else "train"


def _document_keys(files: list[Path]) -> Iterator[tuple[str, int]]:
    """(file name, index) of every document, as iter_documents numbers them, without decoding text."""
    for path in files:
        if _suffix(path) not in JSONL_SUFFIXES:
            yield path.name, 0
            continue
        with _read_errors(path), _open_binary(path) as stream:
            for number, raw in enumerate(stream, 1):
                if raw.strip():
                    yield path.name, number - 1


class _ShardWriter:
    """Appends token ids to `{split}_00000.bin`, `{split}_00001.bin`, ... of at most shard_tokens each."""

    def __init__(self, folder: Path, split: str, dtype: np.dtype, shard_tokens: int):
        self.folder, self.split, self.dtype, self.shard_tokens = folder, split, dtype, shard_tokens
        self.shards: list[dict] = []  # {"file": name, "tokens": count}, as meta.json lists them
        self.tokens = 0
        self.documents = 0
        self._file = None

    def write(self, ids: np.ndarray) -> None:
        ids = ids.astype(self.dtype, copy=False)
        while len(ids):
            if self._file is None or self.shards[-1]["tokens"] == self.shard_tokens:
                self._open_next()
            take = min(len(ids), self.shard_tokens - self.shards[-1]["tokens"])
            self._file.write(ids[:take].tobytes())
            self.shards[-1]["tokens"] += take
            self.tokens += take
            ids = ids[take:]

    def _open_next(self) -> None:
        self.close()
        name = f"{self.split}_{len(self.shards):05d}.bin"
        self._file = open(self.folder / name, "wb")  # closed by close()
        self.shards.append({"file": name, "tokens": 0})

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def move_tail(self, count: int, other: _ShardWriter) -> None:
        """Move the last `count` tokens written here to the end of `other` (a lone document's val part)."""
        self.close()
        start = self.tokens - count
        first = 0
        for shard in self.shards:
            end = first + shard["tokens"]
            if end > start:
                path = self.folder / shard["file"]
                for offset in range(max(start - first, 0), shard["tokens"], _COPY_TOKENS):
                    n = min(_COPY_TOKENS, shard["tokens"] - offset)
                    other.write(np.fromfile(path, self.dtype, n, offset=offset * self.dtype.itemsize))
                keep = max(start - first, 0)
                os.truncate(path, keep * self.dtype.itemsize)
                shard["tokens"] = keep
            first = end
        for shard in [s for s in self.shards if s["tokens"] == 0]:
            (self.folder / shard["file"]).unlink()
        self.shards = [s for s in self.shards if s["tokens"] > 0]
        self.tokens = start


# Set once per worker process by _init_worker: the tokenizer travels as JSON text, not a pickle.
_worker_tokenizer: Tokenizer | None = None


def _init_worker(tokenizer_json: str) -> None:
    global _worker_tokenizer
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # the processes are the parallelism
    from genpt.tokenizer import Tokenizer

    _worker_tokenizer = Tokenizer.from_str(tokenizer_json)


def _encode_texts(tokenizer: Tokenizer, texts: list[str], dtype: np.dtype) -> tuple[list[np.ndarray], int]:
    ids = tokenizer.encode_batch(texts)
    return [np.array(i, dtype=dtype) for i in ids], sum(len(t.encode("utf-8")) for t in texts)


def _encode_in_worker(texts: list[str], dtype: np.dtype) -> tuple[list[np.ndarray], int]:
    return _encode_texts(_worker_tokenizer, texts, dtype)


def _batches(docs: Iterator[Document]) -> Iterator[list[Document]]:
    """Group pieces into tasks of about PIECE_CHARS, so many short documents cost few messages."""
    batch, size = [], 0
    for doc in docs:
        batch.append(doc)
        size += len(doc.text)
        if size >= PIECE_CHARS:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _encoded(tasks: Iterator[list[Document]], tokenizer: Tokenizer, dtype: np.dtype, workers: int):
    """(documents, their ids, bytes) for each task, in input order whatever the number of workers.

    A few tasks per worker are in flight, so reading never runs far ahead of encoding. Workers are
    spawned, not forked: forking after tokenizers' threads have run can deadlock.
    """
    if workers == 1:
        for docs in tasks:
            yield docs, *_encode_texts(tokenizer, [d.text for d in docs], dtype)
        return
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(workers, context, initializer=_init_worker, initargs=(tokenizer.to_str(),))
    pending: deque = deque()
    try:
        for docs in tasks:
            stubs = [Document(d.source, "", d.index, d.last) for d in docs]  # the text went to the worker
            pending.append((stubs, pool.submit(_encode_in_worker, [d.text for d in docs], dtype)))
            while len(pending) >= _IN_FLIGHT_PER_WORKER * workers or (pending and pending[0][1].done()):
                stubs, future = pending.popleft()
                yield stubs, *future.result()
        for stubs, future in pending:
            yield stubs, *future.result()
    except BrokenProcessPool:
        raise GenptError("an encoding worker process died: out of memory, or a script without "
                         "`if __name__ == '__main__':` that worker processes cannot import; "
                         "try workers=1") from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _estimated_bytes(files: list[Path]) -> int:
    """Text size for the progress bar; a .gz file records its uncompressed size (mod 4 GiB) at its end."""
    total = 0
    for path in files:
        size = path.stat().st_size
        if path.name.lower().endswith(".gz") and size >= 4:
            with open(path, "rb") as f:
                f.seek(-4, os.SEEK_END)
                size = struct.unpack("<I", f.read(4))[0]
        total += size
    return total


def _describe_source(path: Path) -> dict:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_READ_BYTES):
            digest.update(block)
    return {"path": str(path), "bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def _check_replaceable(output_dir: Path) -> None:
    """Refuse to replace anything but a previous prepare's output (or an empty folder)."""
    if output_dir.exists() and not output_dir.is_dir():
        raise GenptError(f"{output_dir}: exists and is not a folder; choose another output")
    if output_dir.is_dir() and any(output_dir.iterdir()) and not (output_dir / "meta.json").is_file():
        raise GenptError(f"{output_dir}: exists and was not made by `genpt prepare` (no meta.json); "
                         "choose another output or remove it")


def _sibling(path: Path, kind: str) -> Path:
    """A fresh hidden name beside `path`: same file system, so renames are atomic."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.{kind}")


def _replace_dir(new: Path, target: Path) -> None:
    """Put the finished folder `new` at `target`; an old `target` is removed only once `new` is in place."""
    if target.exists():
        old = _sibling(target, "old")
        os.replace(target, old)
        os.replace(new, target)
        shutil.rmtree(old)
    else:
        os.replace(new, target)


def prepare(
    inputs: Sequence[str | Path],
    tokenizer: Tokenizer,
    output_dir: str | Path,
    *,
    val_fraction: float = 0.01,
    workers: int = 0,
    shard_tokens: int = 100_000_000,
    seed: int = 1234,
    text_field: str = "text",
    strip_gutenberg: bool = False,
    progress: bool = True,
) -> PrepareStats:
    """Encode `inputs` into train/val token shards in `output_dir` (see the module docstring).

    Each document is followed by the end-of-text id. The folder appears complete or not at all:
    everything is written to a temporary folder beside it and renamed at the end; on any error an
    existing `output_dir` is left as it was. The tokenizer is saved beside the shards. `workers`
    is the number of encoding processes (0: one per core, or none for a small corpus); it changes
    the speed, never the output.
    """
    if not 0 <= val_fraction < 1:
        raise GenptError(f"val_fraction {val_fraction} must be in [0, 1)")
    if shard_tokens < 1 or workers < 0:
        raise GenptError(f"shard_tokens ({shard_tokens}) must be >= 1 and workers ({workers}) >= 0")
    began = time.perf_counter()
    files = expand_inputs(inputs)
    output_dir = Path(output_dir).resolve()
    _check_replaceable(output_dir)
    plan = _SplitPlan.make(files, seed, val_fraction)
    sources = [_describe_source(f) for f in files]
    dtype = np.dtype("<u2") if tokenizer.vocab_size <= 1 << 16 else np.dtype("<u4")
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = _sibling(output_dir, "tmp")
    tmp.mkdir()
    try:
        writers = {split: _ShardWriter(tmp, split, dtype, shard_tokens) for split in ("train", "val")}
        eot = np.array([tokenizer.eot_id], dtype=dtype)
        bytes_read = documents = 0
        estimate = _estimated_bytes(files)
        if workers == 0:
            workers = 1 if estimate < _POOL_MIN_BYTES else os.cpu_count() or 1
        tasks = _batches(iter_documents(files, text_field=text_field, strip_gutenberg=strip_gutenberg))
        encoded = _encoded(tasks, tokenizer, dtype, workers)
        bar = tqdm(total=estimate, unit="B", unit_scale=True, desc="prepare", disable=not progress)
        with bar, closing(encoded):  # closing stops the worker pool at once if anything fails
            for docs, ids, nbytes in encoded:
                for doc, doc_ids in zip(docs, ids, strict=True):
                    split = plan.split_of(Path(doc.source).name, doc.index)
                    writers[split].write(doc_ids)
                    if doc.last:
                        writers[split].write(eot)
                        writers[split].documents += 1
                        documents += 1
                bytes_read += nbytes
                bar.update(nbytes)
        if plan.single:
            tail = min(max(1, round(writers["train"].tokens * val_fraction)), writers["train"].tokens - 1)
            writers["train"].move_tail(tail, writers["val"])
            writers["val"].documents = 1
            log.warning("%s: only one document, so its last %d tokens (%.1f%%) are the validation split",
                        files[0], tail, 100 * val_fraction)
        for writer in writers.values():
            writer.close()
        meta = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "dtype": dtype.name,
            "byte_order": "little",
            "vocab_size": tokenizer.vocab_size,
            "tokenizer_fingerprint": tokenizer.fingerprint,
            "eot_id": tokenizer.eot_id,
            "documents": documents,
            "splits": {
                name: {"tokens": w.tokens, "documents": w.documents, "shards": w.shards}
                for name, w in writers.items()
            },
            "val_split": "tail of the only document" if plan.single else "whole documents",
            "sources": sources,
            "val_fraction": val_fraction,
            "seed": seed,
            "text_field": text_field,
            "strip_gutenberg": strip_gutenberg,
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        tokenizer.save(tmp / "tokenizer.json")
        _replace_dir(tmp, output_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return PrepareStats(documents, writers["train"].tokens, writers["val"].tokens, bytes_read,
                        time.perf_counter() - began, output_dir)


# ---------------------------------------------------------------------------------------------
# Reading shards
# ---------------------------------------------------------------------------------------------


class TokenShards:
    """One split ("train" or "val") of a prepared folder, as read-only memory maps."""

    def __init__(self, folder: str | Path, split: str = "train"):
        self.folder, self.split = Path(folder), split
        meta_path = self.folder / "meta.json"
        try:
            self.meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise GenptError(f"{meta_path}: missing; make the folder with `genpt prepare`") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise GenptError(f"{meta_path}: not valid JSON ({exc}); run `genpt prepare` again") from None
        try:
            if self.meta.get("format") != FORMAT or self.meta.get("version") != FORMAT_VERSION:
                raise GenptError(f"{meta_path}: not a {FORMAT} version {FORMAT_VERSION} meta.json")
            self.dtype = np.dtype(self.meta["dtype"]).newbyteorder("<")
            self.vocab_size = int(self.meta["vocab_size"])
            self.tokenizer_fingerprint = str(self.meta["tokenizer_fingerprint"])
            self.eot_id = int(self.meta["eot_id"])
            splits = self.meta["splits"]
            if split not in splits:
                raise GenptError(f"{meta_path}: no split {split!r}; it has {', '.join(splits)}")
            shards = [(str(s["file"]), int(s["tokens"])) for s in splits[split]["shards"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise GenptError(f"{meta_path}: malformed ({type(exc).__name__}: {exc}); "
                             "run `genpt prepare` again") from None
        if not shards or sum(n for _, n in shards) == 0:
            raise GenptError(f"{self.folder}: the {split} split is empty")
        self._maps = []
        for name, tokens in shards:
            path = self.folder / name
            if not path.is_file():
                raise GenptError(f"{path}: missing shard listed in meta.json; run `genpt prepare` again")
            size, expected = path.stat().st_size, tokens * self.dtype.itemsize
            if size != expected:
                raise GenptError(f"{path}: {size} bytes, expected {expected} ({tokens} {self.dtype.name} "
                                 "tokens); the file is truncated or changed; run `genpt prepare` again")
            self._maps.append(np.memmap(path, dtype=self.dtype, mode="r", shape=(tokens,)))
        self._starts = np.cumsum([0] + [len(m) for m in self._maps])

    def __len__(self) -> int:
        return int(self._starts[-1])

    def read(self, start: int, length: int) -> np.ndarray:
        """Tokens [start, start + length), across shard boundaries, as a new array."""
        if start < 0 or length < 0 or start + length > len(self):
            raise IndexError(f"tokens [{start}, {start + length}) outside the {len(self)} of {self.split}")
        out = np.empty(length, dtype=self.dtype)
        shard = int(np.searchsorted(self._starts, start, side="right")) - 1
        done = 0
        while done < length:
            offset = start + done - int(self._starts[shard])
            take = min(length - done, len(self._maps[shard]) - offset)
            out[done : done + take] = self._maps[shard][offset : offset + take]
            done += take
            shard += 1
        return out


class LMBatches:
    """Deterministic (B, T) windows for the LM: batch `index` is a pure function of (seed, index),
    so a resumed or re-sharded run sees exactly the same data.

    The split is cut into non-overlapping windows of seq_len tokens (starting at k * seq_len).
    Global sample s = b * B + i belongs to epoch e = s // num_windows and is window
    perm_e[s % num_windows], where perm_e = np.random.default_rng([seed, e]).permutation(num_windows):
    every window is seen once per epoch, in a new order each epoch.
    """

    def __init__(self, shards: TokenShards, batch_size: int, seq_len: int, seed: int):
        if batch_size < 1 or seq_len < 1:
            raise ValueError(f"batch_size ({batch_size}) and seq_len ({seq_len}) must be >= 1")
        self.shards, self.batch_size, self.seq_len, self.seed = shards, batch_size, seq_len, seed
        self.num_windows = len(shards) // seq_len
        if self.num_windows == 0:
            raise GenptError(f"{shards.folder}: the {shards.split} split has {len(shards)} tokens, fewer "
                             f"than the {seq_len} needed for one window; use more text or a shorter context")
        self._epoch, self._perm = -1, np.empty(0, dtype=np.int64)

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._epoch:  # recomputed only when an epoch boundary is crossed
            rng = np.random.default_rng([self.seed, epoch])
            self._epoch, self._perm = epoch, rng.permutation(self.num_windows)
        return self._perm

    def get_samples(self, sample_indices: Iterable[int]) -> torch.Tensor:
        """LongTensor (len(sample_indices), seq_len) of the given global sample indices."""
        rows = []
        for sample in sample_indices:
            if sample < 0:
                raise IndexError(f"sample index {sample} must be >= 0")
            epoch, position = divmod(int(sample), self.num_windows)
            window = int(self._permutation(epoch)[position])
            rows.append(self.shards.read(window * self.seq_len, self.seq_len))
        return torch.from_numpy(np.stack(rows).astype(np.int64))

    def get(self, index: int) -> torch.Tensor:
        """Batch `index`: LongTensor (batch_size, seq_len)."""
        first = index * self.batch_size
        return self.get_samples(range(first, first + self.batch_size))
