"""What a room member may send: the checks the hub runs before a message reaches a room.

A read-only member's updates are dropped; while the store is too far behind, updates are
refused (``check_backlog``, 1013); every member's updates and awareness messages are
rate-limited by its token buckets (``collab.relay.limits``), and an awareness message
has a size bound. Each check costs a few attribute reads: they run for every message.
"""

from __future__ import annotations

import logging
import time

from collab.config import Config
from collab.errors import MessageTooBig, RateLimited
from collab.relay.connection import Connection
from collab.relay.fanout import Stats
from collab.relay.persistence import check_backlog
from collab.store import Store

__all__ = ["admit_awareness", "admit_update"]

log = logging.getLogger(__name__)


def admit_update(conn: Connection, store: Store, config: Config, stats: Stats) -> bool:
    """Admit one update from ``conn``, counting it; ``False``: drop it (read-only).

    Raises:
        Overloaded: the store is too far behind to take more updates.
        RateLimited: ``conn`` sends updates faster than its limit.
    """
    if conn.read_only:
        log.debug("%r: dropped a write from a read-only member", conn)
        return False
    check_backlog(store, config)
    bucket = conn.bucket
    if bucket is not None and not bucket.take(time.monotonic()):
        raise RateLimited("too many updates, slow down")
    stats.updates_in += 1
    return True


def admit_awareness(conn: Connection, size: int, config: Config, stats: Stats) -> None:
    """Admit one awareness message of ``size`` bytes from ``conn``.

    Raises:
        MessageTooBig: larger than ``max_awareness_size``.
        RateLimited: ``conn`` sends awareness faster than its limit.
    """
    if size > config.max_awareness_size:
        raise MessageTooBig("awareness update too large")
    bucket = conn.awareness_bucket
    if bucket is not None and not bucket.take(time.monotonic()):
        stats.awareness_limited += 1
        raise RateLimited("too many awareness updates, slow down")
