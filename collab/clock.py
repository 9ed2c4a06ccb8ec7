"""Time as collab stores it and as its APIs show it.

A leaf: stdlib only, no I/O beyond reading the wall clock. Rows carry epoch milliseconds
(``now_ms``); every API, JSON body, header and CLI listing shows them the one way
``format_ms`` writes them. Parsing times given by users stays with the code that reports
their errors (``collab.history.replay.parse_time``).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

__all__ = ["format_ms", "now_ms"]


def now_ms() -> int:
    """Wall-clock time in milliseconds since the Unix epoch, as stored."""
    return time.time_ns() // 1_000_000


def format_ms(ms: int) -> str:
    """Epoch milliseconds as ISO-8601 UTC with milliseconds and a ``Z``, as the API shows them."""
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
