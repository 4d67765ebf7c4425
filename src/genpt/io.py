"""Files written whole or not at all, text and JSON read with a one-line error, folder locks, and genpt's cache folder.

A reader of a path written here sees the old file (or folder) or the new one, never part of one: the
new one is written under a hidden temporary name in the same folder (so the rename is atomic), every
file is flushed to disk, then it is renamed into place and the folder's entry is flushed too.
"""

from __future__ import annotations

import fcntl
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
    """A fresh hidden name beside `path` (`.NAME.PID-HEX.KIND`): same file system, so renames are atomic;
    the writer's pid tells `remove_leftovers` whether the writer is still alive."""
    return path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:12]}.{kind}")


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
    """Clean up after atomic writes to `path` whose process was killed midway (`.NAME.PID-HEX.tmp|old`).

    A `.tmp` is a half-written new version: removed. An `.old` is the previous version moved aside: if the
    kill came before the new one took its place, it is put back, else removed. What a live process (other
    than this one) is writing is left alone.
    """
    path = Path(path)
    for p in sorted(path.parent.glob(f".{glob.escape(path.name)}.*")):
        if not p.name.endswith((".tmp", ".old")) or _writer_alive(p.name[len(path.name) + 2 :]):
            continue
        if p.name.endswith(".old") and not path.exists():
            os.replace(p, path)
        elif p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


def _writer_alive(tail: str) -> bool:
    """Whether the process named in a sibling's `PID-HEX.KIND` lives (names without a pid: no)."""
    pid = tail.split("-", 1)[0]
    if "-" not in tail or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


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


def read_text(path: str | Path, kind: str, what: str = "") -> str:
    """The UTF-8 text of a `kind` file ("JSON"); a missing, unreadable or non-UTF-8 file, or a folder, is a
    GenptError naming it. `what` completes the message for a missing file ("a genpt checkpoint holds config.json").

    Read as bytes and decoded, so that line ends reach the parser as they are in the file.
    """
    path = Path(path)
    try:
        return path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise GenptError(f"{path}: missing" + (f"; {what}" if what else "")) from None
    except IsADirectoryError:
        raise GenptError(f"{path}: a folder, expected a {kind} file") from None
    except PermissionError:
        raise GenptError(f"{path}: permission denied") from None
    except UnicodeDecodeError as e:
        raise GenptError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def read_json(path: str | Path, what: str = "") -> Any:
    """The JSON in `path`; a missing, non-UTF-8 or invalid file is a GenptError naming it (`what` as in `read_text`)."""
    text = read_text(path, "JSON", what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise GenptError(f"{path}: not valid JSON ({e})") from None


LOCK_FILE = ".genpt.lock"


@contextmanager
def folder_lock(folder: str | Path, what: str = "run") -> Iterator[None]:
    """Hold `folder`'s lock for the block; a second holder is refused in one line, naming the first's pid.

    flock(2) belongs to the open file, so a SIGKILLed holder releases it at once. The lock file is
    removed on release; a holder that locked a file another one just removed checks the inode and
    tries again, so two processes never both believe they hold the lock.
    """
    path = Path(folder) / LOCK_FILE
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise GenptError(f"{folder}: another genpt process (pid {holder}) is writing this {what}; wait for it "
                             "to end, or choose another --output") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the previous holder removed this file as we opened it: lock the new one
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        path.unlink(missing_ok=True)
        os.close(fd)


def cache_dir() -> Path:
    """genpt's cache (downloads, converted models): $GENPT_CACHE if set, else ~/.cache/genpt."""
    root = os.environ.get("GENPT_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "genpt"


__all__ = ["LOCK_FILE", "atomic_dir", "atomic_path", "cache_dir", "folder_lock", "fsync_dir", "fsync_file", "read_json",
           "remove_leftovers", "replace_dir", "replace_file", "sibling", "write_bytes", "write_json", "write_text"]
