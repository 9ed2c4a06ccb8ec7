"""Webhooks against a real local HTTP receiver: signatures, debounce, retries, a hanging
receiver that must not slow the relay, connect and disconnect events."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import WSCloseCode, web
from aiohttp.test_utils import TestServer
from pycrdt import Doc, Text

from collab.config import Config
from collab.http.state import HUB
from collab.relay.webhook import Webhooks, sign, verify
from collab.sync import hocuspocus as hp
from collab.sync.protocol import encode_sync_step1, encode_update, write_var_uint
from collab.sync.ydoc import apply_unless_known
from tests.conftest import (
    TIMEOUT_FACTOR,
    RawClient,
    Server,
    editor,
    eventually,
    raw_client,
    start_server,
)
from tests.http.api import SECRET as AUTH_SECRET, call, jti_of, token
from tests.http.test_websocket_errors import POISON

SECRET = "webhook test secret"


@dataclass
class Received:
    """One request as the receiver saw it."""

    at: float
    headers: dict[str, str]
    body: bytes

    @property
    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data


@dataclass
class Receiver:
    """A webhook endpoint: records every request, answers with ``statuses`` in turn (then
    200), or holds each request until ``release`` is set when ``hang`` is on."""

    url: str = ""
    requests: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    hang: bool = False
    release: asyncio.Event = field(default_factory=asyncio.Event)
    hanging: int = 0

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [r.payload for r in self.requests if r.headers["X-Collab-Event"] == kind]


@asynccontextmanager
async def receiver() -> AsyncIterator[Receiver]:
    """Run a real HTTP receiver on 127.0.0.1."""
    state = Receiver()

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        state.requests.append(Received(time.monotonic(), dict(request.headers), body))
        if state.hang:
            state.hanging += 1
            await state.release.wait()
        status = state.statuses.pop(0) if state.statuses else 200
        return web.Response(status=status)

    app = web.Application()
    app.router.add_post("/hook", hook)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    state.url = f"http://127.0.0.1:{server.port}/hook"
    try:
        yield state
    finally:
        state.release.set()  # let held requests finish, so the receiver closes at once
        await server.close()


def _hooked(config: Config, url: str, **settings: Any) -> Config:
    values: dict[str, Any] = {
        "webhook_url": url,
        "webhook_secret": SECRET,
        "webhook_debounce": 0.05,
        "webhook_timeout": 2.0,
        "webhook_backoff": 0.1,
    }
    values.update(settings)
    return config.replace(**values)


def _verified_by_hand(request: Received) -> bool:
    # The recipe README gives receivers, written out with the standard library only.
    timestamp = request.headers["X-Collab-Timestamp"]
    expected = hmac.new(
        SECRET.encode(), timestamp.encode() + b"." + request.body, hashlib.sha256
    ).hexdigest()
    fresh = abs(time.time() - int(timestamp)) <= 300
    return fresh and hmac.compare_digest(
        "sha256=" + expected, request.headers["X-Collab-Signature"]
    )


def test_sign_and_verify() -> None:
    """A signature verifies for its body and timestamp only, and only while fresh."""
    body = b'{"event":"document.changed"}'
    signature = sign(SECRET, "1700000000", body)
    assert signature.startswith("sha256=")
    assert verify(SECRET, "1700000000", body, signature, now=1700000100)
    assert not verify(SECRET, "1700000000", body + b" ", signature, now=1700000100)
    assert not verify("other", "1700000000", body, signature, now=1700000100)
    assert not verify(SECRET, "1700000001", body, signature, now=1700000100)  # replayed
    assert not verify(SECRET, "1700000000", body, signature, now=1700000000 + 301)
    assert not verify(SECRET, "yesterday", body, signature, now=1700000100)


async def test_change_event_is_signed_and_describes_the_change(
    config: Config, session: aiohttp.ClientSession
) -> None:
    """A change sends one signed document.changed event with its seq range and authors."""
    async with receiver() as hook, start_server(_hooked(config, hook.url)) as server:
        async with editor(session, server.url("team/notes", "user=alice")) as alice:
            alice.text += "hello"
            await eventually(lambda: bool(hook.events("document.changed")), what="change event")
        request = next(
            r for r in hook.requests if r.headers["X-Collab-Event"] == "document.changed"
        )
        assert request.headers["Content-Type"] == "application/json"
        assert request.headers["X-Collab-Delivery"] == request.payload["id"]
        assert _verified_by_hand(request)
        assert verify(
            SECRET,
            request.headers["X-Collab-Timestamp"],
            request.body,
            request.headers["X-Collab-Signature"],
            now=time.time(),
        )
        payload = request.payload
        assert payload["event"] == "document.changed"
        assert (payload["room"], payload["first_seq"], payload["last_seq"]) == ("team/notes", 1, 1)
        assert (payload["updates"], payload["authors"]) == (1, ["alice"])
        assert abs(payload["timestamp_ms"] / 1000 - time.time()) < 60


async def test_debounce_coalesces_a_burst(config: Config, session: aiohttp.ClientSession) -> None:
    """A burst of 60 edits by two people becomes a few events covering seqs 1..60 exactly."""
    settings = _hooked(config, "", webhook_debounce=0.3)
    async with receiver() as hook, start_server(settings.replace(webhook_url=hook.url)) as server:
        url = server.url("burst")
        async with (
            editor(session, url + "?user=alice") as alice,
            editor(session, url + "?user=bob") as bob,
        ):
            for i in range(30):
                alice.text += "a"
                bob.text += "b"
                if i % 10 == 0:
                    await asyncio.sleep(0)  # let the frames go out as people type
            hub = server.app[HUB]
            await eventually(lambda: hub.rooms["burst"].seq == 60, what="60 updates applied")
            await eventually(
                lambda: sum(e["updates"] for e in hook.events("document.changed")) == 60,
                what="every update announced",
            )
        changes = hook.events("document.changed")
        assert 1 <= len(changes) <= 3, changes
        # Consecutive windows tile the log: a receiver can tell it missed nothing.
        assert changes[0]["first_seq"] == 1 and changes[-1]["last_seq"] == 60
        for before, after in zip(changes, changes[1:], strict=False):
            assert after["first_seq"] == before["last_seq"] + 1
        assert set().union(*(e["authors"] for e in changes)) == {"alice", "bob"}


async def test_retries_with_backoff_after_two_500s(
    config: Config, session: aiohttp.ClientSession
) -> None:
    """Two 500s are retried after 0.1 s and then 0.2 s; the third attempt is delivered."""
    async with receiver() as hook, start_server(_hooked(config, hook.url)) as server:
        hook.statuses = [500, 500]
        async with editor(session, server.url("flaky")) as alice:
            alice.text += "x"
            await eventually(lambda: len(hook.requests) >= 4, what="3 attempts and a connect")
        hooks = server.app[HUB].webhooks
        await eventually(lambda: hooks.sent >= 2, what="connect and change delivered")
        first, second, third = hook.requests[:3]
        assert first.headers["X-Collab-Event"] == "connection.opened"
        assert len({r.headers["X-Collab-Delivery"] for r in (first, second, third)}) == 1
        assert second.at - first.at >= 0.1 * 0.9
        assert third.at - second.at >= 0.2 * 0.9
        assert all(_verified_by_hand(r) for r in hook.requests)
        assert (hooks.retries, hooks.failed, hooks.dropped) == (2, 0, 0)
        async with session.get(server.http + "/metrics") as response:
            metrics = await response.text()
        assert "collab_webhooks_retried_total 2.0" in metrics
        assert "collab_webhooks_failed_total 0.0" in metrics


async def test_gives_up_after_attempts_and_never_retries_a_refusal(
    config: Config, session: aiohttp.ClientSession
) -> None:
    """A 503 forever is tried `webhook_attempts` times then dropped; a 403 is tried once."""
    settings = _hooked(config, "", webhook_attempts=3, webhook_debounce=60)
    async with receiver() as hook, start_server(settings.replace(webhook_url=hook.url)) as server:
        hooks = server.app[HUB].webhooks
        hook.statuses = [503, 503, 503, 403]
        async with raw_client(session, server.url("down")) as client:
            await client.handshake()
            await eventually(lambda: hooks.failed == 1, what="connect event given up")
        await eventually(lambda: hooks.failed == 2, what="disconnect event refused")
        assert [r.headers["X-Collab-Event"] for r in hook.requests] == [
            "connection.opened",
            "connection.opened",
            "connection.opened",
            "connection.closed",
        ]
        assert (hooks.sent, hooks.retries) == (0, 2)


async def test_hanging_receiver_never_delays_the_relay(
    config: Config, session: aiohttp.ClientSession
) -> None:
    """While the endpoint holds every request, edits still flow between two editors at
    once, and the bounded queue drops its oldest events and counts them."""
    settings = _hooked(config, "", webhook_debounce=0, webhook_queue=5, webhook_timeout=30)
    async with receiver() as hook, start_server(settings.replace(webhook_url=hook.url)) as server:
        hook.hang = True
        hooks = server.app[HUB].webhooks
        url = server.url("busy")
        async with editor(session, url) as alice, editor(session, url) as bob:
            await eventually(lambda: hook.hanging == 1, what="the receiver holds a request")
            started = time.monotonic()
            for i in range(100):
                alice.text += "x"
                await eventually(lambda: len(str(bob)) == i + 1, timeout=1.0)
            elapsed = time.monotonic() - started
            # 100 round trips through the relay; a relay waiting on the webhook (held for
            # up to 30 s per request) could not have done even one.
            assert elapsed < 5 * TIMEOUT_FACTOR, elapsed
            assert hook.hanging == 1  # one request in flight, the rest queued
            assert hooks.dropped >= 90
            assert hooks.queued == 5
            hook.release.set()
            await eventually(lambda: hooks.queued == 0, what="queue drained")
        assert hooks.failed == 0


async def test_connect_and_disconnect_events(
    config: Config, session: aiohttp.ClientSession
) -> None:
    """Joining and leaving send connection.opened and connection.closed (with the close
    code); a connection refused before joining sends nothing."""
    async with receiver() as hook, start_server(_hooked(config, hook.url)) as server:
        async with editor(session, server.url("meet", "user=ann")):
            await eventually(lambda: bool(hook.events("connection.opened")), what="opened")
        await eventually(lambda: bool(hook.events("connection.closed")), what="closed")
        async with raw_client(session, server.url("bad%00name")) as refused:
            assert await refused.closed_with() == 4400
        opened, closed = hook.events("connection.opened"), hook.events("connection.closed")
        assert len(opened) == len(closed) == 1
        assert (opened[0]["room"], opened[0]["user"]) == ("meet", "ann")
        assert closed[0]["connection_id"] == opened[0]["connection_id"]
        assert (closed[0]["room"], closed[0]["user"], closed[0]["close_code"]) == (
            "meet",
            "ann",
            1000,
        )
        assert all(_verified_by_hand(r) for r in hook.requests)


async def test_hocuspocus_documents_send_the_same_events(
    config: Config, session: aiohttp.ClientSession
) -> None:
    """Each document of a Hocuspocus socket is a connection for the webhooks: opened when
    it joins, changed by its edits (with its author), closed with its code when the
    provider closes it."""
    async with receiver() as hook, start_server(_hooked(config, hook.url)) as server:
        address = hp.Address("hp-room")
        async with session.ws_connect(f"ws://127.0.0.1:{server.port}/hocuspocus?user=hilda") as ws:
            await ws.send_bytes(hp.encode_token(address, ""))
            source: Doc[Any] = Doc()
            updates: list[bytes] = []
            source.observe(lambda event: updates.append(event.update))
            source.get("content", type=Text).insert(0, "hi")
            await ws.send_bytes(hp.encode_update(address, updates[-1]))
            await eventually(lambda: bool(hook.events("document.changed")), what="changed")
            await ws.send_bytes(hp.encode_close(address))
            await eventually(lambda: bool(hook.events("connection.closed")), what="closed")
        (opened,) = hook.events("connection.opened")
        (changed,) = hook.events("document.changed")
        (closed,) = hook.events("connection.closed")
        assert (opened["room"], opened["user"]) == ("hp-room", "hilda")
        assert changed["room"] == "hp-room" and "hilda" in str(changed)
        assert (closed["connection_id"], closed["close_code"]) == (opened["connection_id"], 1000)


async def test_shutdown_sends_the_pending_change(
    config: Config, session: aiohttp.ClientSession
) -> None:
    """Changes still inside a debounce window are announced when the server stops."""
    settings = _hooked(config, "", webhook_debounce=3600)
    async with receiver() as hook:
        async with start_server(settings.replace(webhook_url=hook.url)) as server:
            async with editor(session, server.url("late")) as alice:
                alice.text += "bye"
                hub = server.app[HUB]
                await eventually(lambda: hub.rooms["late"].seq == 1)
            assert not hook.events("document.changed")
        [change] = hook.events("document.changed")
        assert (change["room"], change["first_seq"], change["last_seq"]) == ("late", 1, 1)


async def test_without_url_nothing_is_sent() -> None:
    """With no endpoint configured the events cost nothing and no task starts."""
    hooks = Webhooks.from_config(Config())
    await hooks.start()
    hooks.document_changed("a", 1, None)
    hooks.connected("a", None, "c1")
    assert (hooks.queued, hooks.sent, hooks.dropped) == (0, 0, 0)
    await hooks.close()


@pytest.mark.parametrize("urls", ["http://127.0.0.1:1/a, http://127.0.0.1:2/b"])
def test_comma_separated_urls(urls: str) -> None:
    """``webhook_url`` takes several endpoints; each gets its own queue."""
    hooks = Webhooks.from_config(Config(webhook_url=urls))
    assert [e.url for e in hooks._endpoints] == ["http://127.0.0.1:1/a", "http://127.0.0.1:2/b"]


@dataclass
class Scene:
    """What an act of the close-code matrix may use to end its connection."""

    client: RawClient
    server: Server
    session: aiohttp.ClientSession
    stale: Doc[Any] | None = None


Act = Callable[[Scene], Awaitable[None]]


async def _nothing(scene: Scene) -> None:
    """The refusal happens at connect: nothing to do."""


def _awareness_message(clock: int) -> bytes:
    state = b'{"user":{"name":"m"}}'
    inner = bytes((1, 7, clock, len(state))) + state
    return bytes((1, len(inner))) + inner


async def _text(scene: Scene) -> None:
    await scene.client.ws.send_str("hello")


async def _malformed(scene: Scene) -> None:
    await scene.client.ws.send_bytes(b"\x00\x02\x03\xff\xff\xff")


async def _too_big(scene: Scene) -> None:
    await scene.client.ws.send_bytes(b"\x00\x02" + b"\x00" * 8192)


async def _awareness_flood(scene: Scene) -> None:
    for clock in range(1, 40):
        await scene.client.ws.send_bytes(_awareness_message(clock))


async def _document_too_large(scene: Scene) -> None:
    source: Doc[Any] = Doc()
    source.get("content", type=Text).insert(0, "x" * 3000)
    update = source.get_update()
    await scene.client.ws.send_bytes(b"\x00\x02" + write_var_uint(len(update)) + update)


async def _normal(scene: Scene) -> None:
    await scene.client.ws.close()


async def _room_panics(scene: Scene) -> None:
    # The room's document is poisoned behind the validator's back (as in
    # tests/http/test_websocket_errors.py); the next SyncStep1 makes yrs panic on it.
    source: Doc[Any] = Doc()
    source.get("content", type=Text).insert(0, "stored")
    await scene.client.ws.send_bytes(encode_update(source.get_update()))
    room = scene.server.app[HUB].rooms["codes"]
    await eventually(lambda: room.seq == 1, what="the edit applied")
    with contextlib.suppress(BaseException):  # a PanicException: the doc is now broken
        apply_unless_known(room.doc, POISON[3:])
    await scene.client.ws.send_bytes(encode_sync_step1(b"\x00"))


async def _shutdown(scene: Scene) -> None:
    await scene.server.app.shutdown()  # aiohttp's own shutdown signal: on_shutdown runs


async def _revoked(scene: Scene) -> None:
    status, _ = await call(
        scene.session,
        scene.server,
        "POST",
        "/api/tokens/revoke",
        {"jti": jti_of(_VICTIM)},
        token=_ADMIN,
    )
    assert status == 200


async def _deleted(scene: Scene) -> None:
    status, _ = await call(scene.session, scene.server, "DELETE", "/api/docs/codes")
    assert status == 200


async def _stale_upload(scene: Scene) -> None:
    assert scene.stale is not None
    await scene.client.ws.send_bytes(encode_update(scene.stale.get_update()))


async def _deleted_and_purged_copy(config: Config, session: aiohttp.ClientSession) -> Doc[Any]:
    """A copy of ``codes`` kept by a client, then the document deleted: the matrix's
    server purges it at start (deleted_retention 0), so its client's join makes a new
    document of that name, which the copy's upload is stale against (docs/lineage.md)."""
    doc: Doc[Any] = Doc()
    async with start_server(config) as server:
        async with editor(session, server.url("codes"), doc) as client:
            client.text += "old"
            await eventually(lambda: server.app[HUB].rooms["codes"].seq == 1, what="typed")
        await server.app[HUB].store.flush()
        status, _ = await call(session, server, "DELETE", "/api/docs/codes")
        assert status == 200
    return doc


_ADMIN = token(user="root", admin=True)
_VICTIM = token(user="vic")


@dataclass(frozen=True)
class Case:
    """One way a connection ends: settings, how it connects, then what ends it."""

    act: Act
    settings: dict[str, Any] = field(default_factory=dict)
    query: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    joins: bool = True
    """False for a refusal at connect, before the room is joined: the webhook announces
    only connections it announced as opened (``Webhooks.disconnected``)."""
    prepare: Callable[[Config, aiohttp.ClientSession], Awaitable[Doc[Any]]] | None = None


_AUTH = {"auth_secret": AUTH_SECRET}
CLOSE_CASES = [
    pytest.param(Case(_normal), 1000, id="normal"),
    pytest.param(Case(_text), 1003, id="text"),
    pytest.param(Case(_malformed), 1007, id="malformed"),
    pytest.param(Case(_too_big), 1009, id="too-big"),
    pytest.param(Case(_room_panics), 1011, id="room-reset"),
    pytest.param(Case(_shutdown), 1012, id="shutdown"),
    pytest.param(Case(_awareness_flood), 1013, id="awareness-flood"),
    pytest.param(Case(_nothing, _AUTH, joins=False), 4401, id="no-token"),
    pytest.param(Case(_revoked, _AUTH, query=f"token={_VICTIM}"), 4401, id="revoked-token"),
    pytest.param(
        Case(
            _nothing,
            {"allowed_origins": "https://ok.example"},
            headers={"Origin": "https://evil.example"},
            joins=False,
        ),
        4403,
        id="origin-refused",
    ),
    pytest.param(Case(_deleted), 4404, id="document-deleted"),
    pytest.param(
        Case(_stale_upload, {"deleted_retention": 0}, prepare=_deleted_and_purged_copy),
        4410,
        id="stale-lineage",
    ),
    pytest.param(Case(_document_too_large), 4413, id="document-too-large"),
]


@pytest.mark.parametrize(("case", "code"), CLOSE_CASES)
async def test_recorded_close_code_is_the_one_the_client_got(
    config: Config, session: aiohttp.ClientSession, case: Case, code: int
) -> None:
    """Whatever ends a connection, the close code the client receives is the one /metrics
    and the connection.closed webhook record (a refusal at connect, which never joined,
    has no webhook event)."""
    stale = await case.prepare(config, session) if case.prepare is not None else None
    settings = _hooked(
        config, "", max_message_size=4096, awareness_burst=10, max_document_size=2048
    ).replace(**case.settings)
    async with receiver() as hook, start_server(settings.replace(webhook_url=hook.url)) as server:
        url = server.url("codes", case.query)
        async with raw_client(session, url, headers=case.headers) as client:
            if case.joins:
                await client.handshake()
            await case.act(Scene(client, server, session, stale))
            if code != 1000:
                assert await client.closed_with() == code
            else:
                assert client.ws.close_code == 1000
        hooks = server.app[HUB].webhooks
        if case.joins:
            await eventually(lambda: bool(hook.events("connection.closed")), what="closed")
            assert [e["close_code"] for e in hook.events("connection.closed")] == [code]

        async def counted() -> bool:
            return bool(await _closes_recorded(session, server))

        await eventually(counted, what="the close counted")
        assert await _closes_recorded(session, server) == [
            f'collab_closes_total{{code="{code}",protocol="y-websocket"}} 1.0'
        ]
        if not case.joins:  # counted, so the handler's finally has run: nothing was queued
            assert (hooks.queued, hooks.sent, hook.requests) == (0, 0, [])


async def _closes_recorded(session: aiohttp.ClientSession, server: Server) -> list[str]:
    """The collab_closes_total lines of /metrics."""
    async with session.get(server.http + "/metrics") as response:
        metrics = await response.text()
    return [line for line in metrics.splitlines() if line.startswith("collab_closes_total{")]


async def _server_close_code(reader: asyncio.StreamReader) -> int:
    """Read the server's frames (unmasked) until its close frame; return the close code."""
    while True:
        first, second = await reader.readexactly(2)
        length = second & 0x7F
        if length == 126:
            length = int.from_bytes(await reader.readexactly(2), "big")
        elif length == 127:
            length = int.from_bytes(await reader.readexactly(8), "big")
        payload = await reader.readexactly(length)
        if first & 0x0F == 0x8:
            return int.from_bytes(payload[:2], "big")


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param(b"\x83\x80\x00\x00\x00\x00", id="reserved-opcode"),
        pytest.param(b"\xc2\x81\x00\x00\x00\x00\x00", id="reserved-bit"),
        pytest.param(b"\x09\x80\x00\x00\x00\x00", id="fragmented-ping"),
        pytest.param(b"\x80\x81\x00\x00\x00\x00\x00", id="orphan-continuation"),
    ],
)
async def test_a_broken_frame_is_closed_1002_and_recorded(
    config: Config, session: aiohttp.ClientSession, frame: bytes
) -> None:
    """A WebSocket frame that breaks RFC 6455 (a reserved opcode or bit, a fragmented
    control frame, a continuation of nothing) is a protocol error: the client gets 1002,
    and /metrics and the connection.closed webhook record 1002."""
    async with receiver() as hook, start_server(_hooked(config, hook.url)) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            key = base64.b64encode(os.urandom(16))
            writer.write(
                b"GET /ws/codes HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                b"Sec-WebSocket-Key: " + key + b"\r\n\r\n"
            )
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5 * TIMEOUT_FACTOR)
            assert head.startswith(b"HTTP/1.1 101 "), head
            writer.write(frame)
            code = await asyncio.wait_for(_server_close_code(reader), 5 * TIMEOUT_FACTOR)
        finally:
            writer.close()
        assert code == WSCloseCode.PROTOCOL_ERROR
        await eventually(lambda: bool(hook.events("connection.closed")), what="closed")
        assert [e["close_code"] for e in hook.events("connection.closed")] == [1002]
        assert await _closes_recorded(session, server) == [
            'collab_closes_total{code="1002",protocol="y-websocket"} 1.0'
        ]
