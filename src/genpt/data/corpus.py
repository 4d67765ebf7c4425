"""Text corpus -> token shards on disk (`genpt prepare`).

`prepare` encodes the documents of `genpt.data.documents` in worker processes (in order, so the
output does not depend on the number of workers) and writes raw little-endian token ids into shard
files plus `meta.json`; `genpt.data.shards` reads them back as (B, T) windows for the LM.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import struct
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from genpt import io
from genpt.data.documents import PIECE_CHARS, Document, document_keys, expand_inputs, iter_documents
from genpt.data.shards import FORMAT, FORMAT_VERSION
from genpt.errors import GenptError

if TYPE_CHECKING:
    from genpt.tokenizer import Tokenizer


def train_tokenizer(
    inputs: Sequence[str | Path],
    vocab_size: int = 16384,
    *,
    min_frequency: int = 2,
    strip_gutenberg: bool = False,
    text_field: str = "text",
    progress: bool = False,
) -> Tokenizer:
    """A byte-level BPE learnt from the documents of text files (.txt, .jsonl and their .gz forms), streamed."""
    from genpt.tokenizer import Tokenizer

    docs = iter_documents(inputs, text_field=text_field, strip_gutenberg=strip_gutenberg)
    return Tokenizer.train((doc.text for doc in docs), vocab_size, min_frequency=min_frequency, progress=progress)


__all__ = ["PrepareStats", "prepare", "train_tokenizer"]

log = logging.getLogger(__name__)

_COPY_TOKENS = 1 << 24
_READ_BYTES = 1 << 20
_IN_FLIGHT_PER_WORKER = 2
# Below this much text, workers=0 encodes in-process: each spawned worker imports genpt (and so
# torch), which takes longer than encoding a few MB with tokenizers (about 3 MB per CPU-second).
# tiktoken encodes ~17 MB per CPU-second on every core from one process: on the 70 MB of books,
# in-process ran at 14-19 MB/s against 10-15 with two worker processes, so it stays in-process longer.
_POOL_MIN_BYTES = 8 << 20
_POOL_MIN_BYTES_THREADED = 1 << 30




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
        for name, index in document_keys(files):
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
    io.remove_leftovers(output_dir)  # of prepares killed midway; an output they had moved aside is put back
    _check_replaceable(output_dir)
    plan = _SplitPlan.make(files, seed, val_fraction)
    sources = [_describe_source(f) for f in files]
    dtype = np.dtype("<u2") if tokenizer.vocab_size <= 1 << 16 else np.dtype("<u4")
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = io.sibling(output_dir, "tmp")
    tmp.mkdir()
    try:
        writers = {split: _ShardWriter(tmp, split, dtype, shard_tokens) for split in ("train", "val")}
        eot = np.array([tokenizer.eot_id], dtype=dtype)
        bytes_read = documents = 0
        estimate = _estimated_bytes(files)
        if workers == 0:
            threshold = _POOL_MIN_BYTES_THREADED if tokenizer.encodes_in_threads else _POOL_MIN_BYTES
            workers = 1 if estimate < threshold else os.cpu_count() or 1
        tasks = _batches(iter_documents(files, text_field=text_field, strip_gutenberg=strip_gutenberg))
        encoded = _encoded(tasks, tokenizer, dtype, workers)
        # disable=None turns the bar off when stderr is not a terminal (a log file, CI).
        bar = tqdm(total=estimate, unit="B", unit_scale=True, desc="prepare", disable=None if progress else True)
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
        io.replace_dir(tmp, output_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return PrepareStats(documents, writers["train"].tokens, writers["val"].tokens, bytes_read,
                        time.perf_counter() - began, output_dir)
