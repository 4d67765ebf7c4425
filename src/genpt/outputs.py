"""Where a command writes its result: never over one of its inputs, never onto a folder, and somewhere it
can write, all checked before any work, so a refusal costs nothing and a long job cannot fail at its end."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from genpt.errors import GenptError


def check_output_file(output: str | Path, inputs: Iterable[str | Path], flag: str = "--output") -> Path:
    """`output` as a file path that is safe to (over)write; `inputs` are the files the command reads."""
    path = Path(output)
    if path.is_dir():
        raise GenptError(f"{flag} {path}: is a folder; expected a file path")
    target = path.resolve()
    for item in inputs:
        if Path(item).resolve() == target:
            raise GenptError(f"{flag} {path}: is also an input ({item}); writing it would destroy that input, "
                             "choose another path")
    folder = target.parent
    while not folder.exists():  # the first folder that exists is where the new ones will be made
        folder = folder.parent
    if not os.access(folder, os.W_OK | os.X_OK):
        raise GenptError(f"{flag} {path}: permission denied (cannot write in {folder})")
    return path
