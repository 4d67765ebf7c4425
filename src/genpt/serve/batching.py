"""Dynamic batching: requests that arrive close together share one forward pass, run off the event loop.

Each item waits at most `max_wait` seconds for others to join it; a batch takes up to `max_batch`
items that share a key (items of different shapes or sampling settings cannot share a pass). All
model work runs in one worker thread, in arrival order, so PyTorch's own threads are not fought over
and the event loop keeps answering (health checks, the page, refusals) while a batch runs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("genpt")


class Busy(Exception):
    """The queue is full: the server answers 503 rather than queue without bound."""


@dataclass
class _Pending:
    item: Any
    key: Hashable
    future: asyncio.Future = field(repr=False)


class Batcher:
    """Groups submitted items into calls of `run(items) -> results` (one result per item, in order)."""

    def __init__(self, run: Callable[[Sequence[Any]], Sequence[Any]], executor: ThreadPoolExecutor, *,
                 max_batch: int = 32, max_wait: float = 0.005, max_queue: int = 4096):
        self.run, self.executor = run, executor
        self.max_batch, self.max_wait, self.max_queue = max_batch, max_wait, max_queue
        self._pending: list[_Pending] = []
        self._arrived = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.batches = self.items = 0  # counts for /healthz: items / batches is the mean batch size
        self.busy = 0.0  # seconds spent running batches

    async def submit(self, item: Any, key: Hashable = None) -> Any:
        """The item's result, once the batch holding it has run; cancelling drops the item if not yet run."""
        if len(self._pending) >= self.max_queue:
            raise Busy(f"{len(self._pending)} items are waiting already (the queue holds {self.max_queue})")
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._serve())
        pending = _Pending(item, key, asyncio.get_running_loop().create_future())
        self._pending.append(pending)
        self._arrived.set()
        return await pending.future

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._arrived.wait()
            # The wait bound counts from the oldest item's turn: a full batch goes at once.
            deadline = loop.time() + self.max_wait
            while self._count_ready() < self.max_batch and loop.time() < deadline:
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), deadline - loop.time())
                except TimeoutError:
                    break
            batch = self._take()
            if not self._pending:
                self._arrived.clear()
            if not batch:
                continue
            self.batches, self.items = self.batches + 1, self.items + len(batch)
            started = loop.time()
            try:
                results = await loop.run_in_executor(self.executor, self.run, [p.item for p in batch])
            except Exception as e:  # one failed batch answers its own requests with the error, nothing more
                log.exception("batch of %d failed", len(batch))
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(e)
                continue
            finally:
                self.busy += loop.time() - started
            for p, result in zip(batch, results, strict=True):
                if not p.future.done():
                    p.future.set_result(result)

    def _live(self) -> list[_Pending]:
        self._pending = [p for p in self._pending if not p.future.done()]  # dropped: cancelled or timed out
        return self._pending

    def _count_ready(self) -> int:
        live = self._live()
        return sum(p.key == live[0].key for p in live) if live else 0

    def _take(self) -> list[_Pending]:
        live = self._live()
        if not live:
            return []
        key = live[0].key
        batch = [p for p in live if p.key == key][: self.max_batch]
        taken = {id(p) for p in batch}
        self._pending = [p for p in live if id(p) not in taken]
        return batch
