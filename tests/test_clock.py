"""The one clock: stored epoch milliseconds and the one way they are shown."""

from __future__ import annotations

import time

from collab.clock import format_ms, now_ms


def test_format_is_iso_utc_with_milliseconds_and_z() -> None:
    """A time shows as ISO-8601 in UTC, to the millisecond, ending in Z."""
    assert format_ms(0) == "1970-01-01T00:00:00.000Z"
    assert format_ms(1_795_359_845_123) == "2026-11-22T15:04:05.123Z"


def test_now_is_wall_clock_milliseconds() -> None:
    """now_ms counts milliseconds since the epoch, as time.time does in seconds."""
    before = time.time()
    now = now_ms()
    assert before * 1000 - 1 <= now <= time.time() * 1000 + 1
