"""Fan-out scenario: R rooms x C clients, T typists per room typing at a steady rate.

Typists hold real pycrdt documents; receivers hold none. A delivered edit is recognised by
its exact message bytes (the server should forward them unchanged), or failing that by the
(client, clock) of a one-struct update; anything else is counted as unrecognised.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pycrdt

from .metrics import ClientLoad, summarize
from .peer import Peer, close_all, connect_many, new_session, open_peer
from .process import ServerProcess
from .wire import SyncStep, decode_sync, encode_sync, update_origin

__all__ = ["FanoutConfig", "Timing", "parse_fanout", "run_fanout"]

_SPEC = re.compile(r"^(\d+)x(\d+)x(\d+)@(\d+(?:\.\d+)?)$")
_ALPHABET = "abcdefghijklmnopqrstuvwxyz     "


@dataclass(frozen=True, slots=True)
class FanoutConfig:
    rooms: int
    clients: int
    typists: int
    rate: float

    @property
    def label(self) -> str:
        return f"{self.rooms}x{self.clients}x{self.typists}@{self.rate:g}"


@dataclass(frozen=True, slots=True)
class Timing:
    warmup: float
    duration: float
    drain: float
    connect_timeout: float
    concurrency: int
    on_window: Callable[[bool], None] | None = None
    """Called with True as the measured window opens and False as it closes (a profiler's
    switch: ``connect_cost.py --load fanout``)."""


def parse_fanout(text: str) -> list[FanoutConfig]:
    """Parse "RxCxT@rate[,...]", e.g. "100x10x2@10".

    Raises:
        ValueError: a malformed item, or more typists than clients.
    """
    out = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        m = _SPEC.match(item)
        if m is None:
            raise ValueError(f"bad fanout config {item!r}: expected RxCxT@rate")
        cfg = FanoutConfig(int(m[1]), int(m[2]), int(m[3]), float(m[4]))
        if not (
            cfg.rooms > 0 and cfg.clients > 1 and 0 < cfg.typists <= cfg.clients and cfg.rate > 0
        ):
            raise ValueError(f"bad fanout config {item!r}: need R>0, C>1, 0<T<=C, rate>0")
        out.append(cfg)
    return out


class _Edit:
    __slots__ = ("count", "expected", "measured", "room", "sender", "sent_at")

    def __init__(self, sent_at: float, sender: Peer, measured: bool, expected: int) -> None:
        self.sent_at = sent_at
        self.sender = sender
        self.room = sender.tag
        self.measured = measured
        self.expected = expected
        self.count = 0


class _Typist:
    def __init__(self, client_id: int, peer: Peer, receivers: int) -> None:
        self.client_id = client_id
        self.peer = peer
        self.receivers = receivers
        self.doc: pycrdt.Doc[Any] = pycrdt.Doc(client_id=client_id)
        self.text = self.doc.get("content", type=pycrdt.Text)
        self.length = 0
        self.next = 0.0
        self._update = b""
        self._sub = self.doc.observe(self._on_update)

    def _on_update(self, event: pycrdt.TransactionEvent) -> None:
        self._update = event.update

    def edit(self) -> tuple[bytes, tuple[int, int]]:
        """Append one character; return the Update message and the edit's (client, clock)."""
        clock = self.length
        self.text.insert(clock, _ALPHABET[clock % len(_ALPHABET)])
        self.length += 1
        return encode_sync(SyncStep.UPDATE, self._update), (self.client_id, clock)


class _Tally:
    """Receive side: recognise each message and account for it."""

    def __init__(self) -> None:
        self.by_bytes: dict[bytes, _Edit] = {}
        self.by_origin: dict[tuple[int, int], _Edit] = {}
        self.latencies: list[float] = []
        self.window = (float("inf"), float("inf"))
        self.target = -1  # measured deliveries to wait for; done is set on reaching it
        self.done = asyncio.Event()
        self.delivered = self.in_window = self.echoes = self.cross_room = 0
        self.duplicates = self.reencoded = self.unrecognized = self.other = 0

    def on_message(self, peer: Peer, data: bytes) -> None:
        now = time.perf_counter()
        rec = self.by_bytes.get(data)
        if rec is None:
            rec = self._slow(data)
            if rec is None:
                return
        if rec.sender is peer:
            self.echoes += 1
            return
        if rec.room != peer.tag:
            self.cross_room += 1
            return
        rec.count += 1
        if rec.count > rec.expected:
            self.duplicates += 1
            return
        if self.window[0] <= now < self.window[1]:
            self.in_window += 1
        if rec.measured:
            self.delivered += 1
            self.latencies.append((now - rec.sent_at) * 1000)
            if self.delivered == self.target:
                self.done.set()

    def _slow(self, data: bytes) -> _Edit | None:
        try:
            sync = decode_sync(data)
        except ValueError:
            self.unrecognized += 1
            return None
        if sync is None or sync[0] != SyncStep.UPDATE:
            self.other += 1  # awareness, a late SyncStep1/2: not an edit
            return None
        origin = update_origin(sync[1])
        rec = None if origin is None else self.by_origin.get(origin)
        if rec is None:
            self.unrecognized += 1
        else:
            self.reencoded += 1
        return rec


async def run_fanout(
    cfg: FanoutConfig,
    timing: Timing,
    url_template: str,
    server: ServerProcess,
    ports: list[int] | None = None,
    hocuspocus: bool = False,
) -> dict[str, Any]:
    """Connect, type through warmup + measured window, drain, and return the row.

    With ``ports``, the clients of each room are spread over those servers in turn (one
    room's members on several nodes of a cluster). With ``hocuspocus`` every client speaks
    the Hocuspocus protocol to ``url_template`` (which then has no ``{room}``).
    """
    run_id = uuid.uuid4().hex[:8]
    tally = _Tally()
    async with new_session() as session:

        async def make(i: int) -> Peer:
            room = f"fan-{run_id}-{i // cfg.clients}"
            port = ports[i % len(ports)] if ports else server.port
            url = url_template.format(port=port, room=room)
            peer = await open_peer(session, url, room, hocuspocus)
            peer.tag = i // cfg.clients
            return peer

        t0 = time.perf_counter()
        total = cfg.rooms * cfg.clients
        limit = max(10, total // 20)
        peers, errors = await connect_many(
            make, total, timing.concurrency, timing.connect_timeout, limit
        )
        connect_s = time.perf_counter() - t0
        try:
            if len(errors) > limit:
                raise RuntimeError(f"{len(errors)} of {total} connections failed: {errors[0]}")
            return await _type(cfg, timing, server, peers, tally) | {
                "connected": len(peers),
                "connect_failures": len(errors),
                "connect_errors": errors[:3],
                "connect_s": round(connect_s, 2),
                "handshake_ms": summarize([p.sync_ms for p in peers]),
            }
        finally:
            await close_all(peers)


async def _type(
    cfg: FanoutConfig, timing: Timing, server: ServerProcess, peers: list[Peer], tally: _Tally
) -> dict[str, Any]:
    by_room: dict[int, list[Peer]] = {}
    for p in peers:
        by_room.setdefault(p.tag, []).append(p)
        p.pump(tally.on_message)
    id_base = random.randrange(1_000_000, 2_000_000_000)
    typists = [
        _Typist(id_base + room * cfg.typists + k, p, len(members) - 1)
        for room, members in by_room.items()
        for k, p in enumerate(members[: cfg.typists])
    ]
    interval = 1 / cfg.rate
    start = time.perf_counter() + 0.3
    for t in typists:
        t.next = start + random.random() * interval
    t_warm, t_end = start + timing.warmup, start + timing.warmup + timing.duration
    tally.window = (t_warm, t_end)
    load = ClientLoad()
    sent = sent_measured = expected = skipped = send_failures = 0
    u0 = u1 = server.usage()
    measuring = False
    while True:
        now = time.perf_counter()
        if not measuring and now >= t_warm:
            if timing.on_window is not None:
                timing.on_window(True)
            measuring, u0 = True, server.usage()
            load.start()
        if now >= t_end:
            u1 = server.usage()
            if timing.on_window is not None:
                timing.on_window(False)
            break
        for t in typists:
            if now - t.next > 1.0:  # the client fell behind: skip, don't burst
                missed = int((now - t.next) / interval)
                skipped += missed
                t.next += missed * interval
            while t.next <= now:
                t.next += interval
                frame, origin = t.edit()
                rec = _Edit(time.perf_counter(), t.peer, measuring, t.receivers)
                tally.by_bytes[frame] = tally.by_origin[origin] = rec
                if not await t.peer.send(frame):
                    send_failures += 1
                    continue
                sent += 1
                if measuring:
                    sent_measured += 1
                    expected += t.receivers
        await asyncio.sleep(0.002)
    client = load.stop()
    tally.target = expected
    if tally.delivered >= expected:
        tally.done.set()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timing.drain):
            await tally.done.wait()
    cpu_s, wall = u1.cpu_s - u0.cpu_s, max(u1.at - u0.at, 1e-9)
    return {
        "config": cfg.label,
        "rooms": cfg.rooms,
        "clients": cfg.clients,
        "typists": cfg.typists,
        "rate": cfg.rate,
        "duration_s": timing.duration,
        "edits": sent_measured,
        "edits_per_s": round(sent_measured / wall, 1),
        "expected": expected,
        "delivered": tally.delivered,
        "lost": expected - tally.delivered,
        "deliveries_per_s": round(tally.in_window / wall, 1),
        "latency_ms": summarize(tally.latencies),
        "echoes": tally.echoes,
        "cross_room": tally.cross_room,
        "duplicates": tally.duplicates,
        "reencoded": tally.reencoded,
        "unrecognized": tally.unrecognized,
        "other_messages": tally.other,
        "skipped_edits": skipped,
        "send_failures": send_failures,
        "edits_total": sent,
        "server_cpu_pct": round(100 * cpu_s / wall, 1),
        "server_us_per_delivery": (
            round(1e6 * cpu_s / tally.in_window, 1) if tally.in_window else None
        ),
        "server_rss_mb": round(u1.rss_kb / 1024, 1),
        "client_cpu_pct": client.cpu_pct,
        "client_lag_p99_ms": client.lag_p99_ms,
        "server_exit": server.exit_code(),
    }
