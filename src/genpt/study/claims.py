"""Stage claims: several `genpt study` processes share one study folder, each stage run by one of them.

A process claims a stage by holding an flock(2) on `.claims/<stage>.lock` while it runs it. Another
process that finds the claim held moves on to the next stage and comes back at the end to wait for it
(`Later`). The kernel drops a dead holder's lock at once, so a killed worker's stage is taken over,
and resumed from its checkpoint, by whoever waits for it. Lock files are left in place: removing one
while another process opens it would let both believe they hold it.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

FOLDER = ".claims"


class Claims:
    def __init__(self, study: Path):
        self.folder = Path(study) / FOLDER

    @contextmanager
    def hold(self, stage: str, wait: bool = False) -> Iterator[bool]:
        """Hold `stage`'s claim for the block (True), or yield False at once if another process holds it.
        With `wait`, block until it is free instead."""
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.folder / f"{stage.replace('/', '--')}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)  # closing the descriptor releases the lock


class Later:
    """Stages to run now unless done or claimed elsewhere, and those claimed elsewhere to wait for at the end."""

    def __init__(self, claims: Claims):
        self.claims = claims
        self.waiting: list[tuple[str, Callable[[], bool], Callable[[], object]]] = []

    def run(self, stage: str, done: Callable[[], bool], run: Callable[[], object], *, defer: bool = False) -> None:
        """Run `stage` here unless it is `done` or another process holds it; `defer` puts it straight on the
        waiting list (a stage whose input another process is still making)."""
        if done():
            return
        if not defer:
            with self.claims.hold(stage) as mine:
                if mine:
                    if not done():  # it may have finished between the check and the claim
                        run()
                    return
        self.waiting.append((stage, done, run))

    def finish(self) -> None:
        """Wait for each stage claimed elsewhere; run (resume) it here if its holder stopped before the end."""
        while self.waiting:
            stage, done, run = self.waiting.pop(0)
            with self.claims.hold(stage, wait=True):
                if not done():
                    run()


__all__ = ["Claims", "Later"]
