"""Stage claims: several `genpt study` processes share one study folder, each stage run by one of them.

A process claims a stage by holding an flock(2) on `.claims/<stage>.lock` while it runs it. Another
process that finds the claim held moves on to the next stage and comes back at the end for it
(`Later`). The kernel drops a dead holder's lock at once, so a killed worker's stage is taken over,
and resumed from its checkpoint, by whoever waits for it. Lock files are left in place: removing one
while another process opens it would let both believe they hold it.
"""

from __future__ import annotations

import fcntl
import os
import time
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
    """Stages run here unless done, claimed elsewhere or waiting for their input; those are run (or waited
    for) at the end, each as soon as its input is ready and no other process holds it."""

    def __init__(self, claims: Claims, poll: float = 5.0):
        self.claims = claims
        self.poll = poll  # seconds between looks while every stage left is another process's
        self.waiting: list[tuple[str, Callable[[], bool], Callable[[], object], Callable[[], bool]]] = []

    def run(self, stage: str, done: Callable[[], bool], run: Callable[[], object],
            ready: Callable[[], bool] = lambda: True) -> None:
        """Run `stage` now unless it is `done`, another process holds it, or its input is not `ready`
        (a pre-training run another process is still making): then it waits for `finish`."""
        if done():
            return
        if ready() and self._try(stage, done, run):
            return
        self.waiting.append((stage, done, run, ready))

    def finish(self) -> None:
        """Run every waiting stage whose input is ready and whose claim is free, in order; wait while all
        that are left are another process's. A stage whose holder stopped unfinished is resumed here."""
        while self.waiting:
            for item in self.waiting:
                stage, done, run, ready = item
                if done() or (ready() and self._try(stage, done, run)):
                    self.waiting.remove(item)
                    break
            else:
                time.sleep(self.poll)

    def _try(self, stage: str, done: Callable[[], bool], run: Callable[[], object]) -> bool:
        with self.claims.hold(stage) as mine:
            if mine and not done():  # it may have finished between the check and the claim
                run()
            return mine


__all__ = ["Claims", "Later"]
