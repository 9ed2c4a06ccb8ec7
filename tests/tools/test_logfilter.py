"""RepeatFilter: a real Logger and handler; only the clock is fake."""

from __future__ import annotations

import errno
import logging
from collections.abc import Iterator

import pytest

from collab.tools.logfilter import RepeatFilter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname} {record.name}: {record.getMessage()}")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def handler(clock: Clock) -> Iterator[ListHandler]:
    handler = ListHandler()
    handler.addFilter(RepeatFilter(handler.handle, 10.0, clock=clock, timer=False))
    logger = logging.getLogger("collab.test_logfilter")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.propagate = True


def _repeats(handler: ListHandler) -> RepeatFilter:
    found = handler.filters[0]
    assert isinstance(found, RepeatFilter)
    return found


log = logging.getLogger("collab.test_logfilter")


def _emfile() -> OSError:
    return OSError(errno.EMFILE, "Too many open files")


def test_first_is_logged_repeats_are_counted_then_summarised(
    handler: ListHandler, clock: Clock
) -> None:
    """A flood of one error logs it once, then one summary with the count when the
    interval ends and the next record arrives."""
    for i in range(1000):
        log.error("accept failed on fd %d", i)
        clock.now += 0.001
    assert handler.lines == ["ERROR collab.test_logfilter: accept failed on fd 0"]
    clock.now += 10
    log.warning("something else")
    assert handler.lines[1:] == [
        "ERROR collab.test_logfilter: accept failed on fd 999 [repeated 999 times in the "
        "last 10 s]",
        "WARNING collab.test_logfilter: something else",
    ]


def test_after_the_interval_the_kind_is_logged_again(handler: ListHandler, clock: Clock) -> None:
    """Once an interval is over, the same error is logged afresh (and summarised once)."""
    log.error("disk full")
    log.error("disk full")
    clock.now += 11
    log.error("disk full")
    assert handler.lines == [
        "ERROR collab.test_logfilter: disk full",
        "ERROR collab.test_logfilter: disk full [repeated 1 time in the last 10 s]",
        "ERROR collab.test_logfilter: disk full",
    ]


def test_distinct_kinds_are_counted_apart(handler: ListHandler, clock: Clock) -> None:
    """Kinds differ by logger, level, template and exception type; each is logged once."""
    other = logging.getLogger("collab.test_logfilter.other")
    for _ in range(3):
        log.error("x %s", 1)
        log.warning("x %s", 1)
        other.error("x %s", 1)
        log.error("y")
        try:
            raise _emfile()
        except OSError:
            log.exception("x %s", 1)
        try:
            raise ValueError("bad")
        except ValueError:
            log.exception("x %s", 1)
    assert len(handler.lines) == 6
    _repeats(handler).flush(everything=True)
    assert len(handler.lines) == 12
    assert all("[repeated 2 times in the last 0 s]" in line for line in handler.lines[6:])


def test_asyncio_accept_errors_are_one_kind(handler: ListHandler, clock: Clock) -> None:
    """asyncio's "out of system resource" records (message and socket joined into one
    string, with the OSError) count as one kind although their details differ."""
    loop_log = logging.getLogger("collab.test_logfilter.asyncio")
    for fd in range(500):
        error = _emfile()
        # Preformatted, as asyncio's default exception handler logs it.
        message = f"socket.accept() out of system resource\nsocket: <TransportSocket fd={fd}>"
        loop_log.error(message, exc_info=(type(error), error, None))
    _repeats(handler).flush(everything=True)
    assert len(handler.lines) == 2
    assert handler.lines[1] == (
        "ERROR collab.test_logfilter.asyncio: socket.accept() out of system resource "
        "(OSError: [Errno 24] Too many open files) [repeated 499 times in the last 0 s]"
    )


def test_info_and_debug_always_pass(handler: ListHandler, clock: Clock) -> None:
    """Connect and close lines share a template but each is news: never counted."""
    log.setLevel(logging.DEBUG)
    try:
        for i in range(5):
            log.info("connect room=%r", i)
            log.debug("message %d", i)
    finally:
        log.setLevel(logging.NOTSET)
    assert len(handler.lines) == 10


def test_flush_summarises_only_intervals_that_ended(handler: ListHandler, clock: Clock) -> None:
    """``flush()`` (what the timer calls) waits for the interval; ``everything`` does not."""
    repeats = _repeats(handler)
    log.error("e")
    log.error("e")
    clock.now += 5
    repeats.flush()
    assert len(handler.lines) == 1
    clock.now += 5
    repeats.flush()
    assert handler.lines[1] == "ERROR collab.test_logfilter: e [repeated 1 time in the last 10 s]"
    repeats.flush(everything=True)
    assert len(handler.lines) == 2


def test_kinds_are_bounded(clock: Clock) -> None:
    """Past ``max_kinds`` kinds at once, a new kind is logged rather than tracked."""
    handler = ListHandler()
    repeats = RepeatFilter(handler.handle, 10.0, clock=clock, timer=False, max_kinds=2)
    handler.addFilter(repeats)
    logger = logging.Logger("bounded")
    logger.addHandler(handler)
    for _ in range(3):
        for name in "abc":
            logger.error(name)
    assert handler.lines.count("ERROR bounded: c") == 3
    assert handler.lines.count("ERROR bounded: a") == 1


async def test_the_timer_summarises_without_another_record() -> None:
    """With the timer on, a summary comes when the interval ends even if nothing else
    is logged."""
    from tests.conftest import eventually

    handler = ListHandler()
    handler.addFilter(RepeatFilter(handler.handle, 0.2))
    logger = logging.Logger("timed")
    logger.addHandler(handler)
    for _ in range(3):
        logger.error("flood")
    await eventually(lambda: len(handler.lines) == 2, timeout=5, what="the timer's summary")
    assert handler.lines[1].startswith("ERROR timed: flood [repeated 2 times in the last 0.")
