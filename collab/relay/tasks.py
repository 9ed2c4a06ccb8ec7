"""Background tasks: kept while they run, their failures logged, and loops that catch errors
still ending when they are cancelled."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Coroutine
from typing import Any

__all__ = ["Background", "reraise_cancellation", "stop_tasks"]

log = logging.getLogger(__name__)


def reraise_cancellation() -> None:
    """Call inside an ``except`` of a retry loop: re-raise if this task is being cancelled.

    Drivers (redis-py, asyncpg through SQLAlchemy) can turn a cancellation that lands in
    the middle of a read into their own connection error. A loop that caught that and went
    on would never end, and the process would hang at exit waiting for it.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def stop_tasks(tasks: Collection[asyncio.Task[None]], patience: float = 5.0) -> None:
    """Cancel ``tasks`` and wait until they have ended, cancelling again while they run.

    One ``cancel()`` is not always enough: redis-py can swallow a cancellation that lands
    inside a pipeline (no error at all), and the loop then waits for its next wake-up
    forever, which hung a node's shutdown after a Redis restart. A task still running
    after ``patience`` seconds is logged and left behind rather than blocking the shutdown.
    """
    pending = {task for task in tasks if not task.done()}
    deadline = asyncio.get_running_loop().time() + patience
    while pending:
        for task in pending:
            task.cancel()
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            log.warning("%d background tasks did not end: %s", len(pending), pending)
            return
        _, pending = await asyncio.wait(pending, timeout=min(0.5, left))


class Background:
    """The one path for fire-and-forget tasks: each is referenced until it ends (the event
    loop keeps only weak references, so an unreferenced task can vanish mid-run), and one
    that fails is logged with its traceback. A catch-up or a checkpoint from the log can
    meet a storage outage; the next one retries, but the failure must not go unseen."""

    __slots__ = ("tasks",)

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """Run ``coro`` as a task called ``name``."""
        task = asyncio.create_task(coro, name=name)
        self.tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("background task %s failed", task.get_name(), exc_info=exc)

    async def wait(self, patience: float) -> None:
        """Give the running tasks ``patience`` seconds to end, then cancel the rest."""
        if not self.tasks:
            return
        _, pending = await asyncio.wait(set(self.tasks), timeout=patience)
        if pending:
            await stop_tasks(pending, patience=1.0)
