"""Files written whole or not at all, JSON read with a one-line error, and genpt's cache folder.

A reader of a path written here sees the old file (or folder) or the new one, never part of one: the
new one is written under a hidden temporary name in the same folder (so the rename is atomic), every
file is flushed to disk, then it is renamed into place and the folder's entry is flushed too.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from genpt.errors import GenptError


def sibling(path: Path, kind: str) -> Path:
    """A fresh hidden name beside `path` (`.NAME.HEX.KIND`): same file system, so renames are atomic."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.{kind}")


def fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries (a rename into it) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_file(new: Path, target: Path) -> None:
    """Put the finished file `new` (in `target`'s folder) at `target`, flushed to disk."""
    fsync_file(new)
    os.replace(new, target)
    fsync_dir(target.parent)


def replace_dir(new: Path, target: Path) -> None:
    """Put the finished folder `new` (beside `target`) at `target`, its files flushed to disk first.

    An existing `target` is moved aside and removed only once `new` is in place.
    """
    for f in new.rglob("*"):
        if f.is_file():
            fsync_file(f)
    fsync_dir(new)
    if target.exists():
        old = sibling(target, "old")
        os.replace(target, old)
        os.replace(new, target)
        shutil.rmtree(old)
    else:
        os.replace(new, target)
    fsync_dir(target.parent)


def remove_leftovers(path: Path) -> None:
    """Remove what atomic writes to `path` killed midway left beside it (`.NAME.HEX.tmp`, `.NAME.HEX.old`)."""
    for p in path.parent.glob(f".{glob.escape(path.name)}.*"):
        if p.is_dir() and p.name.endswith((".tmp", ".old")):
            shutil.rmtree(p, ignore_errors=True)
        elif p.name.endswith((".tmp", ".old")):
            p.unlink(missing_ok=True)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path to write `path`'s new content to; renamed over `path` when the block ends cleanly.

    For writers that take a path (safetensors, torch.save); on an error the temporary file is removed
    and `path` is left as it was.
    """
    path = Path(path)
    tmp = sibling(path, "tmp")
    try:
        yield tmp
        replace_file(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | Path, text: str) -> None:
    """`text` as UTF-8, atomically."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, data: Any, *, indent: int | None = 2, ensure_ascii: bool = True) -> None:
    write_text(path, json.dumps(data, indent=indent, ensure_ascii=ensure_ascii))


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """A temporary folder to fill; when the block ends cleanly its files are flushed and it replaces `path`.

    An existing `path` is moved aside and removed only once the new folder is in place; on an error the
    temporary folder is removed and `path` is left as it was.
    """
    path = Path(path)
    tmp = sibling(path, "tmp")
    tmp.mkdir(parents=True)
    try:
        yield tmp
        replace_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_json(path: str | Path, what: str = "") -> Any:
    """The JSON in `path`; a missing, non-UTF-8 or invalid file is a GenptError naming it.

    `what` completes the message for a missing file ("a genpt checkpoint holds config.json").
    """
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GenptError(f"{path}: missing" + (f"; {what}" if what else "")) from None
    except IsADirectoryError:
        raise GenptError(f"{path}: a folder, expected a JSON file") from None
    except UnicodeDecodeError as e:
        raise GenptError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise GenptError(f"{path}: not valid JSON ({e})") from None


def cache_dir() -> Path:
    """genpt's cache (downloads, converted models): $GENPT_CACHE if set, else ~/.cache/genpt."""
    root = os.environ.get("GENPT_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "genpt"


__all__ = ["atomic_dir", "atomic_path", "cache_dir", "fsync_dir", "fsync_file", "read_json", "remove_leftovers",
           "replace_dir", "replace_file", "sibling", "write_bytes", "write_json", "write_text"]
