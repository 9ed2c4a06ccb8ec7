"""Background loops that catch errors must still end when they are cancelled."""

from __future__ import annotations

import asyncio

__all__ = ["reraise_cancellation"]


def reraise_cancellation() -> None:
    """Call inside an ``except`` of a retry loop: re-raise if this task is being cancelled.

    Drivers (redis-py, asyncpg through SQLAlchemy) can turn a cancellation that lands in
    the middle of a read into their own connection error. A loop that caught that and went
    on would never end, and the process would hang at exit waiting for it.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
