"""Rate limits.

PURE: the clock is passed in (``time.monotonic()`` in the server, a fake in tests).
"""

from __future__ import annotations

from collab.config import Config

__all__ = ["TokenBucket", "member_buckets"]


class TokenBucket:
    """Allows ``burst`` events at once and ``rate`` per second sustained.

    Args:
        rate: tokens added per second.
        burst: the bucket's size, and its content at the start.
        now: the current time, in seconds.
    """

    __slots__ = ("_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._last = now

    def take(self, now: float, cost: float = 1.0) -> bool:
        """Spend ``cost`` tokens if there are enough; return whether there were."""
        tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if tokens < cost:
            self._tokens = tokens
            return False
        self._tokens = tokens - cost
        return True


def member_buckets(config: Config, now: float) -> tuple[TokenBucket | None, TokenBucket | None]:
    """The update and awareness rate limits a new room member starts with (``None``: that
    limit is off), the same on ``/ws`` and for each document of a Hocuspocus socket."""
    updates = awareness = None
    if config.max_updates_per_second > 0:
        updates = TokenBucket(config.max_updates_per_second, config.update_burst, now)
    if config.max_awareness_per_second > 0:
        awareness = TokenBucket(config.max_awareness_per_second, config.awareness_burst, now)
    return updates, awareness
