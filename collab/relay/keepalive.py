"""Keepalive: one sweep over every connection, instead of a timer per socket.

aiohttp's per-socket heartbeat schedules a callback for every received chunk and re-arms a
timer from it: a few microseconds on the relay's hottest path, per message. Here a message
costs one counter increment in the receive loop (``Connection.received``), and keepalive
costs O(connections) once per interval, run by the application's keepalive loop.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from collab.errors import CloseCode
from collab.relay.connection import Connection

__all__ = ["sweep"]

log = logging.getLogger(__name__)


def sweep(connections: Iterable[Connection]) -> int:
    """Ping the connections that were quiet for a whole interval; drop the ones that were
    still quiet an interval after their ping.

    A connection is alive if it sent anything since the last sweep (a message or a pong:
    the receive loop counts both in ``Connection.received``). A quiet one is pinged; if
    the next sweep finds it quiet still, it is dropped like aiohttp's heartbeat drops a
    socket that missed its pong: transport closed (aborted, as the peer reads nothing),
    close code 1006. Its receive loop then ends and ``hub.leave`` removes its awareness
    for the others. A client is thus dropped between 2 and 3 sweeps after the last
    thing it sent, and a live idle client gets one ping every other sweep.

    Returns:
        How many connections were dropped.
    """
    dropped = 0
    # A copy: nothing here changes the set, but a connection's cleanup must never be able
    # to break the iteration.
    for conn in tuple(connections):
        seen = conn.seen
        if seen is None or conn.closing:  # not reading yet (joining), or already closing
            continue
        try:
            received = conn.received
            if received != seen:
                conn.seen = received
                conn.pinged = False
            elif conn.pinged:
                conn.abort(CloseCode.ABNORMAL_CLOSURE)
                dropped += 1
            else:
                conn.pinged = True
                conn.ping()
        except Exception:  # one broken socket must not stop keepalive for the others
            log.exception("keepalive failed for connection %s", conn.id)
    return dropped
