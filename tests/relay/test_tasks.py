"""stop_tasks and reraise_cancellation, with real asyncio tasks."""

from __future__ import annotations

import asyncio
import logging

import pytest

from collab.relay.tasks import Background, reraise_cancellation, stop_tasks
from tests.conftest import eventually


async def test_stop_tasks_ends_a_task_that_swallows_one_cancellation() -> None:
    """A loop that swallows the first cancellation (as redis-py can) still ends, because
    stop_tasks cancels again while it runs."""
    swallowed = 0

    async def stubborn() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed += 1
                asyncio.current_task().uncancel()  # type: ignore[union-attr]

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    await asyncio.wait_for(stop_tasks([task], patience=5.0), timeout=5.0)
    assert task.cancelled() and swallowed == 1


async def test_stop_tasks_gives_up_on_a_task_after_its_patience(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A task that ignores every cancellation is logged and left behind after ``patience``
    seconds, so a shutdown never hangs on it."""
    release = asyncio.Event()

    async def deaf() -> None:
        while not release.is_set():
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                asyncio.current_task().uncancel()  # type: ignore[union-attr]

    task = asyncio.create_task(deaf())
    await asyncio.sleep(0)
    with caplog.at_level(logging.WARNING, logger="collab.relay.tasks"):
        await asyncio.wait_for(stop_tasks([task], patience=0.2), timeout=5.0)
    assert not task.done()
    assert "did not end" in caplog.text
    release.set()
    task.cancel()
    await asyncio.wait([task])


async def test_stop_tasks_ignores_tasks_already_done() -> None:
    """Finished tasks are left as they are and stop_tasks returns at once."""
    task = asyncio.create_task(asyncio.sleep(0))
    await task
    await asyncio.wait_for(stop_tasks([task]), timeout=1.0)
    assert task.done() and not task.cancelled()


async def test_reraise_cancellation_raises_in_a_task_being_cancelled() -> None:
    """In an ``except`` that caught a driver's error for a cancellation, the loop ends."""
    seen: list[str] = []

    async def loop() -> None:
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                # A driver turning the cancellation into its own error, then our handler.
                try:
                    raise ConnectionError("lost connection") from None
                except ConnectionError:
                    seen.append("caught")
                    reraise_cancellation()

    task = asyncio.create_task(loop())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, timeout=1.0)
    assert seen == ["caught"]


async def test_reraise_cancellation_is_silent_outside_a_cancellation() -> None:
    """In a task nobody is cancelling, reraise_cancellation returns and the loop goes on."""

    async def once() -> str:
        reraise_cancellation()
        return "went on"

    assert await asyncio.create_task(once()) == "went on"


async def test_failed_background_task_is_logged_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A spawned task that raises is logged at ERROR with its exception and forgotten."""

    async def fail() -> None:
        raise RuntimeError("disk on fire")

    background = Background()
    task = background.spawn(fail(), name="collab-test-fail")
    await asyncio.wait([task])
    await eventually(lambda: not background.tasks, what="forgotten")
    [record] = [r for r in caplog.records if r.name == "collab.relay.tasks"]
    assert record.levelno == logging.ERROR and "collab-test-fail" in record.getMessage()
    assert record.exc_info is not None and str(record.exc_info[1]) == "disk on fire"
