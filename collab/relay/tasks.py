"""Background loops that catch errors must still end when they are cancelled."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection

__all__ = ["reraise_cancellation", "stop_tasks"]

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
