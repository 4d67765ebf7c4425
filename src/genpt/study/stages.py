"""A finished study stage's record (`study_stage.json`): its result, when it ran, on what and for how long.

The file's presence is what marks a stage finished (a second `genpt study` reuses it). The times and the
machine travel with the stage's folder, so a report can say where a study ran and how long it took even
when it was resumed on another machine or copied (file times would say neither).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from genpt import io
from genpt.kernels.measure import cpu_identity

FILE = "study_stage.json"


def machine() -> dict[str, Any]:
    """What this process computes on: the CPU (name, vendor family and model), its threads, PyTorch."""
    cpu = cpu_identity()
    return {"cpu": f"{cpu['name']} (family {cpu['family']} model {cpu['model']})",
            "threads": torch.get_num_threads(), "torch": torch.__version__}


def finished(folder: Path) -> dict | None:
    """The stage's record, or None while it has not finished."""
    return io.read_json(folder / FILE) if (folder / FILE).is_file() else None


def finish(folder: Path, result: dict[str, Any], started: float, resumed: bool) -> None:
    """Mark the stage finished with its `result`; `started` is the `time.time()` this process began it at,
    `resumed` whether it continued an interrupted attempt (whose time is then not counted)."""
    now = time.time()
    io.write_json(folder / FILE, {**result, "started": _iso(started), "finished": _iso(now),
                                  "seconds": round(now - started, 1), "resumed": resumed, "machine": machine()})


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")


__all__ = ["FILE", "finish", "finished", "machine"]
