"""Repeated log records: the first is logged, the repeats are counted and summarised.

Owns ``RepeatFilter``, a ``logging.Filter`` the CLI puts on its log handler. A record's
kind is its logger, its level, the first line of its message template and the type of
its exception, so "socket.accept() out of system resource" (asyncio, once per failed
accept while the process is out of file descriptors) or aiohttp's "Error handling
request" count as one kind whatever their details. The first record of a kind is
logged at once; the same kind again within ``interval`` seconds is only counted, and
when the interval ends one summary says how many there were. Out of file descriptors,
an event loop can log an error per accept attempt, hundreds of thousands a minute:
that filled 300 MB of log in 71 s before this existed.

Records below ``level`` (INFO and DEBUG by default) always pass: the connect and close
lines share a template but each says something new. This module never drops a counted
record without saying so, and never holds a first occurrence back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["RepeatFilter"]

_Kind = tuple[str, int, str, str]
_Ended = tuple[logging.LogRecord, int, float]  # the last repeat, how many, over how long
_SUMMARY = "_collab_repeat_summary"  # set on our own summary records, which always pass


@dataclass(slots=True)
class _Window:
    start: float
    count: int = 0  # records of this kind suppressed since ``start``
    last: logging.LogRecord | None = None  # the newest one, for its message


class RepeatFilter(logging.Filter):
    """Log each kind of record once per ``interval``, then a count of its repeats.

    Args:
        emit: where summaries go: the ``handle`` method of the handler this filters.
        interval: seconds a kind is counted instead of logged after it was logged.
        level: records below this level are never counted.
        clock: monotonic seconds (tests pass a fake one).
        timer: summarise when an interval ends, from a timer thread; without it, a
            summary waits for the next record of any kind or for ``flush``.
        max_kinds: kinds tracked at once; a record of a new kind beyond this is logged.
    """

    def __init__(
        self,
        emit: Callable[[logging.LogRecord], object],
        interval: float = 10.0,
        *,
        level: int = logging.WARNING,
        clock: Callable[[], float] = time.monotonic,
        timer: bool = True,
        max_kinds: int = 1000,
    ) -> None:
        super().__init__()
        self.interval = interval
        self.level = level
        self._emit = emit
        self._clock = clock
        self._timer = timer
        self._max_kinds = max_kinds
        self._windows: dict[_Kind, _Window] = {}
        self._next_sweep = float("inf")
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        """Whether ``record`` is logged; a repeat is counted instead."""
        if record.levelno < self.level or getattr(record, _SUMMARY, False):
            return True
        kind = _kind(record)
        now = self._clock()
        timer_in: float | None = None  # when to summarise, for a first repeat
        with self._lock:
            due = self._sweep(now) if now >= self._next_sweep else []
            window = self._windows.get(kind)
            if window is not None:
                window.count += 1
                window.last = record
                if window.count == 1 and self._timer:
                    timer_in = max(0.0, window.start + self.interval - now)
            elif len(self._windows) < self._max_kinds:
                self._windows[kind] = _Window(now)
                self._next_sweep = min(self._next_sweep, now + self.interval)
        for ended in due:  # outside the lock: emitting runs this filter again
            self._emit(_summary(*ended))
        if timer_in is not None:
            self._start_timer(timer_in)
        return window is None

    def flush(self, *, everything: bool = False) -> None:
        """Log the summaries of the intervals that have ended (``everything``: of all)."""
        with self._lock:
            due = self._sweep(self._clock(), everything)
        for ended in due:
            self._emit(_summary(*ended))

    def _sweep(self, now: float, everything: bool = False) -> list[_Ended]:
        """End the windows that are over (``everything``: all); what to summarise.

        Called under the lock, so it formats nothing: a record's arguments may run any
        code, which may log.
        """
        due: list[_Ended] = []
        upcoming = float("inf")
        for kind, window in list(self._windows.items()):
            end = window.start + self.interval
            if end > now and not everything:
                upcoming = min(upcoming, end)
                continue
            del self._windows[kind]
            if window.count and window.last is not None:
                span = min(now, end) - window.start
                due.append((window.last, window.count, span))
        self._next_sweep = upcoming
        return due

    def _start_timer(self, delay: float) -> None:
        timer = threading.Timer(delay, self.flush)
        timer.daemon = True  # a pending summary never keeps the process alive
        timer.name = "collab-log-repeats"
        timer.start()


def _kind(record: logging.LogRecord) -> _Kind:
    template = str(record.msg)
    first = template.split("\n", 1)[0]
    error = record.exc_info[0].__name__ if record.exc_info and record.exc_info[0] else ""
    return record.name, record.levelno, first, error


def _summary(last: logging.LogRecord, count: int, span: float) -> logging.LogRecord:
    try:
        message = last.getMessage()
    except (TypeError, ValueError):  # arguments that do not fit the template
        message = str(last.msg)
    first = message.split("\n", 1)[0]
    error = ""
    if last.exc_info and last.exc_info[1] is not None:
        detail = " ".join(str(last.exc_info[1]).split())[:200]  # one line: the count ends it
        error = f" ({type(last.exc_info[1]).__name__}: {detail})"
    times = "time" if count == 1 else "times"
    record = logging.LogRecord(
        last.name,
        last.levelno,
        last.pathname,
        last.lineno,
        "%s%s [repeated %d %s in the last %s s]",
        (first, error, count, times, f"{round(span, 1):g}"),
        None,
    )
    setattr(record, _SUMMARY, True)
    return record
