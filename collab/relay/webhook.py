"""Webhooks: tell another service, over signed HTTP POSTs, that documents changed and who
came and went.

An I/O module (aiohttp's client). The relay calls ``document_changed``, ``connected`` and
``disconnected``; they never await, never raise and cost a few dict operations, so a slow,
failing or hanging endpoint can never slow the relay. Changes are debounced per document:
the first change opens a window of ``debounce`` seconds, and when it ends one
``document.changed`` event carries the window's seq range and authors. Events go to one
bounded queue per endpoint, drained by one sender task per endpoint that signs each POST
and retries with exponential backoff. A full queue drops its oldest event (and counts
it); an event that still fails after ``attempts`` tries is logged and dropped.

Delivery is at least once while the process runs and the endpoint answers within the
retries (an attempt that timed out may have been processed: receivers dedupe on the
delivery id), and best effort beyond that: nothing is persisted. See docs/webhooks.md.

This module must never be awaited from the relay's hot path, and never touches rooms,
connections or the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from collab import __version__
from collab.config import Config
from collab.relay.tasks import reraise_cancellation

__all__ = [
    "CONNECTED",
    "DISCONNECTED",
    "DOCUMENT_CHANGED",
    "Webhooks",
    "sign",
    "verify",
]

log = logging.getLogger(__name__)

DOCUMENT_CHANGED = "document.changed"
CONNECTED = "connection.opened"
DISCONNECTED = "connection.closed"

# Retries back off from `backoff` seconds, doubling, up to this.
_MAX_BACKOFF = 60.0
# Statuses worth retrying: the receiver is overloaded or broken for now. Any other 4xx
# means it understood and refused (a bad signature, say); sending again will not help.
_RETRY_4XX = frozenset({408, 425, 429})


def _loggable(url: str) -> str:
    # URLs may carry credentials (user:password@, ?token=): keep them out of the logs.
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}{parts.path}"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Collab-Signature`` value for ``body`` sent at ``timestamp``.

    The timestamp is signed with the body (``timestamp + "." + body``), so a captured
    request cannot be replayed later with a fresh ``X-Collab-Timestamp``.
    """
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(
    secret: str,
    timestamp: str,
    body: bytes,
    signature: str,
    *,
    now: float,
    tolerance: float = 300.0,
) -> bool:
    """What a receiver checks: the signature matches and the timestamp is recent.

    Args:
        timestamp: the ``X-Collab-Timestamp`` header (Unix seconds).
        body: the raw request body, exactly as received (before any JSON parsing).
        signature: the ``X-Collab-Signature`` header.
        now: the receiver's clock, Unix seconds.
        tolerance: how old (or how far in the future) a timestamp may be.
    """
    try:
        sent = int(timestamp)
    except ValueError:
        return False
    if abs(now - sent) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


@dataclass(slots=True)
class _Window:
    """Changes to one document since its last ``document.changed`` event."""

    first_seq: int
    last_seq: int
    updates: int = 0
    authors: set[str] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class _Delivery:
    id: str
    event: str
    body: bytes


@dataclass(slots=True)
class _Endpoint:
    url: str
    queue: deque[_Delivery]
    name: str = ""  # the URL as logged: no credentials, no query string
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


class Webhooks:
    """The webhook endpoints of one server, their queues and their sender tasks.

    With no URL every method returns at once: the relay calls them unconditionally.

    Args:
        urls: the endpoints; each gets every event.
        secret: HMAC-SHA256 key; empty sends unsigned requests (a warning is logged).
        debounce: seconds a document's changes are gathered into one event.
        timeout: seconds one POST may take, from connecting to the response status.
        attempts: tries per event before it is logged and dropped.
        backoff: seconds before the first retry; doubles with each retry.
        queue_size: events queued per endpoint; beyond it the oldest is dropped.
    """

    def __init__(
        self,
        urls: Sequence[str] = (),
        *,
        secret: str = "",
        debounce: float = 2.0,
        timeout: float = 10.0,
        attempts: int = 5,
        backoff: float = 1.0,
        queue_size: int = 1000,
    ) -> None:
        self.secret = secret
        self.debounce = debounce
        self.timeout = timeout
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self._endpoints = [
            _Endpoint(url, deque(maxlen=max(1, queue_size)), _loggable(url)) for url in urls
        ]
        self._windows: dict[str, _Window] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._open: set[str] = set()  # connections announced by `connected`
        self._loop: asyncio.AbstractEventLoop | None = None
        self._session: aiohttp.ClientSession | None = None
        self.sent = 0
        """Deliveries the receiver accepted (2xx)."""
        self.failed = 0
        """Deliveries given up: refused (4xx) or still failing after every attempt."""
        self.dropped = 0
        """Events pushed out of a full queue before they were sent."""
        self.retries = 0
        """Attempts after a first one failed."""

    @classmethod
    def from_config(cls, config: Config) -> Webhooks:
        """The webhooks ``config`` asks for (``webhook_url`` is comma-separated).

        Raises:
            ValueError: a URL that is not http:// or https://.
        """
        urls = [url.strip() for url in config.webhook_url.split(",") if url.strip()]
        for url in urls:
            if urlsplit(url).scheme not in ("http", "https"):
                raise ValueError(f"webhook_url: {url!r} is not an http:// or https:// URL")
        return cls(
            urls,
            secret=config.webhook_secret,
            debounce=config.webhook_debounce,
            timeout=config.webhook_timeout,
            attempts=config.webhook_attempts,
            backoff=config.webhook_backoff,
            queue_size=config.webhook_queue,
        )

    @property
    def queued(self) -> int:
        """Events waiting to be sent, over every endpoint."""
        return sum(len(endpoint.queue) for endpoint in self._endpoints)

    async def start(self) -> None:
        """Start one sender task per endpoint (nothing without endpoints)."""
        if not self._endpoints:
            return
        if not self.secret:
            log.warning("webhook_secret is not set: webhook requests are sent unsigned")
        self._loop = asyncio.get_running_loop()
        # No cookies (a receiver's Set-Cookie must not come back on later calls), and a
        # per-request timeout set in _post.
        self._session = aiohttp.ClientSession(
            cookie_jar=aiohttp.DummyCookieJar(),
            headers={"User-Agent": f"collab/{__version__}"},
        )
        for endpoint in self._endpoints:
            endpoint.idle.set()
            endpoint.task = asyncio.create_task(
                self._send_loop(endpoint), name=f"collab-webhook-{endpoint.name}"
            )
        log.info("webhooks to %s", ", ".join(e.name for e in self._endpoints))

    async def close(self) -> None:
        """Send the pending change windows and drain the queues for at most ``timeout``
        seconds, then stop the senders."""
        if self._loop is None:
            return
        for timer in self._timers.values():
            timer.cancel()
        for room in list(self._windows):
            self._emit_window(room)
        self._loop = None  # later events are ignored
        waits = [endpoint.idle.wait() for endpoint in self._endpoints]
        try:
            await asyncio.wait_for(asyncio.gather(*waits), self.timeout)
        except TimeoutError:
            log.warning("shutdown: %d webhook events not sent", self.queued)
        for endpoint in self._endpoints:
            if endpoint.task is not None:
                endpoint.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await endpoint.task
                endpoint.task = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- events: called by the relay; never await, never raise ----------------------------

    def document_changed(self, room: str, seq: int, author: str | None) -> None:
        """Update ``seq`` of ``room`` was applied (by ``author``, if known)."""
        loop = self._loop
        if loop is None:
            return
        window = self._windows.get(room)
        if window is None:
            window = self._windows[room] = _Window(seq, seq)
            # A fixed window from the first change, not one reset by every change: a
            # document edited without pause still produces an event every `debounce`
            # seconds instead of none until the typing stops.
            self._timers[room] = loop.call_later(self.debounce, self._emit_window, room)
        window.last_seq = seq
        window.updates += 1
        if author is not None:
            window.authors.add(author)

    def connected(self, room: str, user: str | None, connection_id: str) -> None:
        """Connection ``connection_id`` joined ``room``."""
        if self._loop is None:
            return
        self._open.add(connection_id)
        self._enqueue(CONNECTED, {"room": room, "user": user, "connection_id": connection_id})

    def disconnected(
        self, room: str, user: str | None, connection_id: str, close_code: int
    ) -> None:
        """Connection ``connection_id`` left ``room`` with ``close_code``.

        Only connections announced by ``connected`` are reported: one refused before it
        joined (a bad token, say) was never "in" the room.
        """
        if self._loop is None or connection_id not in self._open:
            return
        self._open.discard(connection_id)
        self._enqueue(
            DISCONNECTED,
            {
                "room": room,
                "user": user,
                "connection_id": connection_id,
                "close_code": close_code,
            },
        )

    def _emit_window(self, room: str) -> None:
        self._timers.pop(room, None)
        window = self._windows.pop(room, None)
        if window is None:
            return
        self._enqueue(
            DOCUMENT_CHANGED,
            {
                "room": room,
                "first_seq": window.first_seq,
                "last_seq": window.last_seq,
                "updates": window.updates,
                "authors": sorted(window.authors),
            },
        )

    def _enqueue(self, event: str, fields: dict[str, Any]) -> None:
        delivery_id = uuid.uuid4().hex
        payload = {"id": delivery_id, "event": event, "timestamp_ms": time.time_ns() // 10**6}
        payload.update(fields)
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        delivery = _Delivery(delivery_id, event, body)
        for endpoint in self._endpoints:
            if len(endpoint.queue) == endpoint.queue.maxlen:
                # deque(maxlen) drops from the left on append: the oldest event goes, so
                # the receiver hears the newest state of things.
                self.dropped += 1
            endpoint.queue.append(delivery)
            endpoint.idle.clear()
            endpoint.wakeup.set()

    # -- sending ----------------------------------------------------------------------------

    async def _send_loop(self, endpoint: _Endpoint) -> None:
        # One delivery at a time per endpoint: events reach each receiver in order, and a
        # hanging receiver holds up only its own queue.
        while True:
            if not endpoint.queue:
                endpoint.idle.set()
                endpoint.wakeup.clear()
                await endpoint.wakeup.wait()
                continue
            delivery = endpoint.queue.popleft()
            try:
                await self._deliver(endpoint, delivery)
            except Exception:  # a bug here must not stop later deliveries
                reraise_cancellation()
                self.failed += 1
                log.exception("webhook %s to %s failed", delivery.event, endpoint.name)

    async def _deliver(self, endpoint: _Endpoint, delivery: _Delivery) -> None:
        url = endpoint.name
        for attempt in range(1, self.attempts + 1):
            try:
                status = await self._post(endpoint.url, delivery)
            except (aiohttp.ClientError, TimeoutError) as exc:
                reraise_cancellation()
                problem = str(exc) or type(exc).__name__
            else:
                if 200 <= status < 300:
                    self.sent += 1
                    return
                problem = f"HTTP {status}"
                if 400 <= status < 500 and status not in _RETRY_4XX:
                    self.failed += 1
                    log.warning(
                        "webhook %s %s refused by %s: %s; dropped",
                        delivery.event,
                        delivery.id,
                        url,
                        problem,
                    )
                    return
            if attempt == self.attempts:
                break
            delay = min(_MAX_BACKOFF, self.backoff * 2 ** (attempt - 1))
            self.retries += 1
            log.info(
                "webhook %s %s to %s failed (%s), attempt %d of %d; retrying in %.1fs",
                delivery.event,
                delivery.id,
                url,
                problem,
                attempt,
                self.attempts,
                delay,
            )
            await asyncio.sleep(delay)
        self.failed += 1
        log.warning(
            "webhook %s %s to %s failed %d times (last: %s); dropped",
            delivery.event,
            delivery.id,
            url,
            self.attempts,
            problem,
        )

    async def _post(self, url: str, delivery: _Delivery) -> int:
        assert self._session is not None
        # Stamped and signed per attempt: a retry after a long backoff still carries a
        # fresh timestamp, so receivers can keep a tight replay window.
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "X-Collab-Event": delivery.event,
            "X-Collab-Delivery": delivery.id,
            "X-Collab-Timestamp": timestamp,
        }
        if self.secret:
            headers["X-Collab-Signature"] = sign(self.secret, timestamp, delivery.body)
        async with self._session.post(
            url,
            data=delivery.body,
            headers=headers,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=self.timeout),
        ) as response:
            return response.status
