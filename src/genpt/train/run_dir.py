"""A run folder's rules: a new run goes only where nothing of the user's would be overwritten, `--resume`
only where a run is, and one writer at a time, which alone may clean up what killed writers left."""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

from genpt import checkpoint as ckpt
from genpt import io
from genpt.errors import GenptError
from genpt.io import LOCK_FILE, folder_lock
from genpt.kernels import select

# What genpt itself writes in a run folder; anything else is the user's.
SETTINGS = ("config.json", "finetune.json")
KERNELS = (select.KERNELS_FILE, select.KERNELS_FILE + ".lock")  # the run's kernel choices (`writing`)
RUN_FILES = {*SETTINGS, "metrics.jsonl", "tensorboard", ckpt.CHECKPOINTS, ckpt.BEST, LOCK_FILE, *KERNELS}
METRICS_TMP = "metrics.tmp"  # MetricsLog's rewrite on resume


def _leftover(name: str) -> bool:
    """What an atomic write of one of the run's files leaves when killed (`.NAME.PID-HEX.tmp|old`)."""
    return name == METRICS_TMP or (name.startswith(".") and name.endswith((".tmp", ".old"))
                                   and any(name[1:].startswith(f"{ours}.") for ours in RUN_FILES))


def check_run_dir(run_dir: Path, *, resume: bool, settings: str, keys: set[str]) -> None:
    """Refuse, before any work, a run that would overwrite what is not its own.

    `settings` is the run's settings file (config.json, finetune.json) and `keys` the top-level keys
    that make it genpt's.
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise GenptError(f"{run_dir}: a file, not a run folder; choose another --output")
    if resume and not run_dir.is_dir():
        raise GenptError(f"{run_dir}: no such run folder; --resume continues a run, so start it without --resume")
    if not run_dir.is_dir():
        return
    # One listing decides: under torchrun rank 0 may be writing the settings file while another rank looks,
    # and a second look could see it appear between two questions about the folder.
    names = [p.name for p in run_dir.iterdir()]
    theirs = sorted(name for name in names if name not in RUN_FILES and not _leftover(name))
    if settings in names:  # written atomically: complete wherever it is listed
        ours = _is_settings(run_dir / settings, keys)
    else:  # no settings: a run's other files without them are not a run's (the user's own metrics.jsonl)
        ours = all(name == LOCK_FILE or name in KERNELS or _leftover(name) for name in names)
    if theirs or not ours:
        held = ", ".join(theirs[:3]) or settings
        raise GenptError(f"{run_dir}: holds files that are not a genpt run ({held}); choose a new or empty folder")
    # A fine-tuned run that kept no checkpoint to resume from (finetune.resume_checkpoints) still holds its best/.
    if not resume and (ckpt.latest_checkpoint(run_dir) is not None or ckpt.BEST in names):
        raise GenptError(f"{run_dir}: already holds a run; pass --resume to continue it or choose another --output")


def _is_settings(path: Path, keys: set[str]) -> bool:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and keys <= data.keys()


@contextmanager
def writing(run_dir: Path, is_main: bool = True):
    """Rank 0 holds the run folder's lock (made if new) for the block; other ranks write only what they add to
    the run's kernel choices. Every rank runs the kernels recorded in RUN/kernels.json (`select.recorded_in`),
    so a resumed run computes what the uninterrupted one would have, whatever was measured again meanwhile."""
    run_dir = Path(run_dir)
    with select.recorded_in(run_dir / select.KERNELS_FILE):
        if not is_main:
            yield
            return
        run_dir.mkdir(parents=True, exist_ok=True)
        with folder_lock(run_dir):
            ckpt.remove_leftovers(run_dir)  # a killed writer's; safe now that no other writer can be in flight
            for name in SETTINGS:
                io.remove_leftovers(run_dir / name)
            (run_dir / METRICS_TMP).unlink(missing_ok=True)
            yield
