"""``/hocuspocus`` with the unmodified ``@hocuspocus/provider`` (2.x, 3.x and 4.x from
npm, in Node: tests/js/hocuspocus.mjs), beside y-websocket clients in the same rooms.

Every provider here shares one ``HocuspocusProviderWebsocket``, as apps do: several
documents on one socket, each with its own token, scope and membership.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pycrdt import Doc, Text

from collab.auth import Access, mint
from collab.config import Config
from collab.errors import CloseCode
from collab.http.state import HUB, SESSIONS
from collab.sync import hocuspocus as hp
from collab.sync.protocol import SyncUpdate
from tests import process
from tests.conftest import TIMEOUT_FACTOR, Server, editor, eventually, start_server
from tests.http.api import SECRET, call, jti_of, token
from tests.jsclient import HocuspocusClient, JsClient
from tests.services import postgres_database, require_redis

MAJORS = [2, 3, 4]


def endpoint(port: int) -> str:
    return f"ws://127.0.0.1:{port}/hocuspocus"


@asynccontextmanager
async def provider_socket(port: int, major: int = 4) -> AsyncIterator[HocuspocusClient]:
    client = await HocuspocusClient.start_socket(endpoint(port), major)
    try:
        yield client
    finally:
        await client.quit()


async def saved(client: HocuspocusClient, doc: str, text: str) -> None:
    """Wait until the provider shows ``text`` and no unsynced changes ("all saved")."""

    async def check() -> bool:
        state = await client.doc_state(doc)
        return bool(state["text"] == text and state["unsynced"] == 0 and state["synced"])

    await eventually(check, timeout=10, what=f"{doc} saved as {text!r}")


async def stored(session: aiohttp.ClientSession, server: Server, room: str) -> str:
    status, body = await call(session, server, "GET", f"/api/docs/{room}/content")
    assert status == 200, body
    return str(body)


@pytest.mark.parametrize("major", MAJORS)
async def test_each_provider_major_syncs_stores_and_reaches_ws_members(
    server: Server, session: aiohttp.ClientSession, major: int
) -> None:
    """A provider of each major version and a y-websocket client edit one document: each
    sees the other's edit, the provider's "unsynced changes" fall to 0, and the edits
    are stored (with the provider's awareness name as author)."""
    async with (
        provider_socket(server.port, major) as hocus,
        editor(session, server.url("mixed")) as ws_member,
    ):
        await hocus.open("mixed", name="hilda")
        ws_member.text += "ws "
        await saved(hocus, "mixed", "ws ")
        await hocus.type("mixed", "hocus", index=3)
        await saved(hocus, "mixed", "ws hocus")
        await eventually(lambda: str(ws_member) == "ws hocus", what="the ws member sees it")
    assert await stored(session, server, "mixed") == "ws hocus"


async def test_awareness_crosses_protocols(server: Server) -> None:
    """A Hocuspocus provider's cursor state reaches a y-websocket client and back."""
    base = server.url("").rstrip("/")
    async with provider_socket(server.port) as hocus:
        await hocus.open("aw", name="hilda")
        js = await JsClient.start(base, "aw", "wanda")
        try:
            await eventually(js.synced, what="js synced")

            def js_sees_hilda() -> bool:
                states = [e for e in js.events if e["event"] == "awareness"]
                return bool(states) and any(
                    (s.get("user") or {}).get("name") == "hilda"
                    for s in states[-1]["states"].values()
                )

            def hocus_sees_wanda() -> bool:
                states = [
                    e for e in hocus.events if e["event"] == "awareness" and e["doc"] == "aw"
                ]
                return bool(states) and any(
                    (s.get("user") or {}).get("name") == "wanda" for s in states[-1]["states"]
                )

            await eventually(js_sees_hilda, what="y-websocket client sees hilda")
            await eventually(hocus_sees_wanda, what="provider sees wanda")
        finally:
            await js.quit()


async def test_two_documents_on_one_socket_and_closing_one(
    server: Server, session: aiohttp.ClientSession
) -> None:
    """Two documents share one socket; closing one (the provider's Close) takes it out
    of its room and leaves the other syncing."""
    async with provider_socket(server.port) as hocus:
        await hocus.open("one")
        await hocus.open("two")
        await hocus.type("one", "first")
        await hocus.type("two", "second")
        await saved(hocus, "one", "first")
        await saved(hocus, "two", "second")
        hub = server.app[HUB]
        assert len(hub.rooms["one"].members) == len(hub.rooms["two"].members) == 1
        await hocus.command("close", doc="one")
        await eventually(lambda: not hub.rooms["one"].members, what="one left")
        await hocus.type("two", "!")
        await saved(hocus, "two", "second!")
    assert await stored(session, server, "one") == "first"
    assert await stored(session, server, "two") == "second!"


async def test_stateless_reaches_the_documents_other_providers(server: Server) -> None:
    """A Stateless payload goes to the other Hocuspocus members of that document only."""
    port = server.port
    async with provider_socket(port) as ann, provider_socket(port) as ben:
        await ann.open("talk")
        await ben.open("talk")
        await ben.open("elsewhere")
        await saved(ann, "talk", "")
        await saved(ben, "talk", "")
        await ann.command("stateless", doc="talk", payload='{"ping": 1}')
        await eventually(
            lambda: ben.seen("stateless", doc="talk", payload='{"ping": 1}'), what="relayed"
        )
        assert not ann.seen("stateless")  # not back to its sender
        assert not ben.seen("stateless", doc="elsewhere")


async def test_a_deleted_document_is_refused_and_others_stay(
    server: Server, session: aiohttp.ClientSession
) -> None:
    """Deleting a document answers its providers with PermissionDenied (4404's meaning),
    and the socket's other document keeps working."""
    async with provider_socket(server.port) as hocus:
        await hocus.open("doomed")
        await hocus.open("kept")
        await hocus.type("doomed", "x")
        await saved(hocus, "doomed", "x")
        status, _ = await call(session, server, "DELETE", "/api/docs/doomed")
        assert status == 200
        await eventually(
            lambda: hocus.seen("denied", doc="doomed", reason="document deleted"),
            what="denied",
        )
        await hocus.type("kept", "still here")
        await saved(hocus, "kept", "still here")


# -- auth ----------------------------------------------------------------------------------


async def test_tokens_accept_deny_and_read_only(
    auth_server: Server, session: aiohttp.ClientSession
) -> None:
    """With auth on, each document's token decides: read-write, denied with the reason,
    read-only (scope announced, writes answered with SyncStatus(false), never stored)."""
    async with provider_socket(auth_server.port) as hocus:
        await hocus.open("rw", token=token("rw", user="writer"))
        await hocus.open("nope", token="not-a-token")
        await hocus.open("ro", token=token("ro", Access.READ, user="reader"))
        await eventually(lambda: hocus.seen("authenticated", doc="rw", scope="read-write"))
        await eventually(lambda: hocus.seen("authenticated", doc="ro", scope="readonly"))
        await eventually(lambda: hocus.seen("denied", doc="nope"), what="denied")
        denied = next(e for e in hocus.events if e["event"] == "denied")
        assert "token" in denied["reason"]
        await hocus.type("rw", "mine")
        await saved(hocus, "rw", "mine")
        await saved(hocus, "ro", "")  # its initial SyncStep2 carried nothing: applied
        await hocus.type("ro", "not allowed")

        async def refused() -> bool:
            return bool((await hocus.doc_state("ro"))["unsynced"] == 1)

        await eventually(refused, what="the read-only write stays unsynced")
    headers = {"Authorization": f"Bearer {token()}"}
    status, history = await call(
        session, auth_server, "GET", "/api/docs/rw/history?raw=1", headers=headers
    )
    assert status == 200
    assert {a for entry in history["entries"] for a in entry["authors"]} == {"writer"}
    status, body = await call(session, auth_server, "GET", "/api/docs/ro/content", headers=headers)
    assert (status, body) == (200, "")


async def test_a_revoked_token_ends_only_its_document(
    auth_server: Server, session: aiohttp.ClientSession
) -> None:
    """Revoking the token of one document sends PermissionDenied for it; the document
    opened with another token goes on."""
    admin = mint(SECRET, user_id="root", docs=[], admin=True)
    doomed = token("a", user="a")
    async with provider_socket(auth_server.port) as hocus:
        await hocus.open("a", token=doomed)
        await hocus.open("b", token=token("b", user="b"))
        await saved(hocus, "a", "")
        await saved(hocus, "b", "")
        status, _ = await call(
            session,
            auth_server,
            "POST",
            "/api/tokens/revoke",
            {"jti": jti_of(doomed)},
            token=admin,
        )
        assert status == 200
        await eventually(lambda: hocus.seen("denied", doc="a"), what="a denied")
        await hocus.type("b", "fine")
        await saved(hocus, "b", "fine")
        assert not auth_server.app[SESSIONS] or all(
            s.address.document == "b" for s in auth_server.app[SESSIONS]
        )


async def test_a_token_that_expires_ends_its_document(
    auth_server: Server, session: aiohttp.ClientSession
) -> None:
    """A document's token that expires while open is answered with PermissionDenied
    ("token expired") for that document; the socket stays for the others."""
    ws = await _raw(auth_server, session)
    await ws.send_bytes(hp.encode_token(hp.Address("brief"), token("brief", expires_in=1)))
    await ws.send_bytes(hp.encode_token(hp.Address("long"), token("long")))
    seen: list[object] = []
    while hp.PermissionDenied(hp.Address("brief"), "token expired") not in seen:
        seen.append(hp.decode(await _next_binary(ws)))
    assert hp.Authenticated(hp.Address("long"), hp.Scope.READ_WRITE) in seen
    hub = auth_server.app[HUB]
    await eventually(lambda: not hub.rooms["brief"].members, what="brief left its room")
    assert len(hub.rooms["long"].members) == 1
    await ws.close()


async def test_each_document_has_its_own_update_limit(
    config: Config, session: aiohttp.ClientSession
) -> None:
    """The update rate limit counts per document: a burst of the limit on each of two
    documents passes; one more on either closes the socket with 1013 (try again later)."""
    limited = config.replace(max_updates_per_second=0.01, update_burst=3)
    async with start_server(limited) as server:
        ws = await _raw(server, session)
        docs: dict[str, Doc[Any]] = {}
        for name in ("left", "right"):
            await ws.send_bytes(hp.encode_token(hp.Address(name), ""))
            docs[name] = Doc()

        def edit(name: str) -> bytes:
            updates: list[bytes] = []
            sub = docs[name].observe(lambda event: updates.append(event.update))
            docs[name].get("content", type=Text).insert(0, "x")
            docs[name].unobserve(sub)
            return hp.encode_update(hp.Address(name), updates[0])

        for _ in range(3):
            for name in docs:
                await ws.send_bytes(edit(name))
        hub = server.app[HUB]

        def stored_six() -> bool:
            return all(n in hub.rooms and hub.rooms[n].seq == 3 for n in docs)

        await eventually(stored_six, what="three edits on each document")
        assert not ws.closed
        await ws.send_bytes(edit("left"))
        msg = await asyncio.wait_for(ws.receive(), 5 * TIMEOUT_FACTOR)
        while msg.type is aiohttp.WSMsgType.BINARY:
            msg = await asyncio.wait_for(ws.receive(), 5 * TIMEOUT_FACTOR)
        assert ws.close_code == CloseCode.TRY_AGAIN_LATER
        await ws.close()


# -- bad input -----------------------------------------------------------------------------


async def _raw(server: Server, session: aiohttp.ClientSession) -> aiohttp.ClientWebSocketResponse:
    return await session.ws_connect(endpoint(server.port))


async def _next_binary(ws: aiohttp.ClientWebSocketResponse) -> bytes:
    while True:
        msg = await asyncio.wait_for(ws.receive(), 5 * TIMEOUT_FACTOR)
        if msg.type is aiohttp.WSMsgType.BINARY:
            return bytes(msg.data)
        assert msg.type is not aiohttp.WSMsgType.CLOSE, (msg.data, msg.extra)


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (b"\x05alpha\x00\x02\x05abc", CloseCode.INVALID_PAYLOAD),  # update length past the end
        (b"\x09alpha", CloseCode.INVALID_PAYLOAD),  # name longer than the frame
        (b"\x05alpha\x0c", CloseCode.UNSUPPORTED_DATA),  # message type 12: unknown
    ],
    ids=["truncated-update", "truncated-name", "unknown-type"],
)
async def test_malformed_frames_close_the_socket_and_spare_the_room(
    server: Server, session: aiohttp.ClientSession, frame: bytes, code: int
) -> None:
    """A malformed frame closes its socket with 1007 (an unknown type with 1003); a
    y-websocket member of the same room never notices, and the room keeps its text."""
    async with editor(session, server.url("alpha")) as member:
        member.text += "safe"
        ws = await _raw(server, session)
        ws_open = hp.encode_token(hp.Address("alpha"), "")
        await ws.send_bytes(ws_open)
        assert hp.decode(await _next_binary(ws)) == hp.Authenticated(
            hp.Address("alpha"), hp.Scope.READ_WRITE
        )
        await ws.send_bytes(frame)
        msg = await asyncio.wait_for(ws.receive(), 5 * TIMEOUT_FACTOR)
        while msg.type is aiohttp.WSMsgType.BINARY:
            msg = await asyncio.wait_for(ws.receive(), 5 * TIMEOUT_FACTOR)
        assert ws.close_code == code
        await ws.close()
        member.text += "!"
        await eventually(
            lambda: (
                str(server.app[HUB].rooms["alpha"].doc.get("content", type=type(member.text)))
                == "safe!"
            ),
            what="room intact",
        )
    assert await stored(session, server, "alpha") == "safe!"


async def test_an_invalid_document_name_is_denied_with_the_reason(
    server: Server, session: aiohttp.ClientSession
) -> None:
    """A name that is no valid room name gets PermissionDenied with the reason, and the
    socket stays open for valid documents."""
    ws = await _raw(server, session)
    await ws.send_bytes(hp.encode_token(hp.Address("bad\x01name"), ""))
    answer = hp.decode(await _next_binary(ws))
    assert isinstance(answer, hp.PermissionDenied) and "name" in answer.reason
    await ws.send_bytes(hp.encode_token(hp.Address("good"), ""))
    assert isinstance(hp.decode(await _next_binary(ws)), hp.Authenticated)
    await ws.close()


async def test_a_providers_close_is_answered_and_ends_only_that_document(
    server: Server, session: aiohttp.ClientSession
) -> None:
    """Close from the provider is answered with Close ("provider_initiated"), as
    Hocuspocus answers it, and takes that document out of its room only."""
    ws = await _raw(server, session)
    for name in ("shut", "open"):
        await ws.send_bytes(hp.encode_token(hp.Address(name), ""))
    hub = server.app[HUB]
    await eventually(lambda: {"shut", "open"} <= set(hub.rooms), what="both joined")
    await ws.send_bytes(hp.encode_close(hp.Address("shut")))
    while (message := hp.decode(await _next_binary(ws))) != hp.Close(
        hp.Address("shut"), "provider_initiated"
    ):
        assert not isinstance(message, hp.Close), message
    await eventually(lambda: not hub.rooms["shut"].members, what="shut left its room")
    assert len(hub.rooms["open"].members) == 1
    await ws.close()


async def test_frames_before_the_token_wait_and_a_flood_resets(
    auth_server: Server, session: aiohttp.ClientSession
) -> None:
    """With auth on, frames for a document not authenticated yet wait for its token and
    then run in order; more than 1,000 of them close the socket with 4205."""
    ws = await _raw(auth_server, session)
    early = hp.encode_sync_step1(hp.Address("early"), b"\x00")  # an empty state vector
    await ws.send_bytes(early)
    await ws.send_bytes(hp.encode_token(hp.Address("early"), token("early")))
    kinds = [type(hp.decode(await _next_binary(ws))) for _ in range(3)]
    # Authenticated, the room's SyncStep1, then the answer to the early SyncStep1.
    assert kinds == [hp.Authenticated, hp.Sync, hp.Sync]
    for _ in range(1001):
        await ws.send_bytes(hp.encode_query_awareness(hp.Address("flood")))
    msg = await asyncio.wait_for(ws.receive(), 5 * TIMEOUT_FACTOR)
    while msg.type is aiohttp.WSMsgType.BINARY:
        msg = await asyncio.wait_for(ws.receive(), 5 * TIMEOUT_FACTOR)
    assert ws.close_code == CloseCode.RESET_CONNECTION
    await ws.close()


async def test_metrics_count_members_and_closes_by_protocol(
    server: Server, session: aiohttp.ClientSession
) -> None:
    """/metrics tells Hocuspocus documents from y-websocket members."""
    async with (
        provider_socket(server.port) as hocus,
        editor(session, server.url("m")),
    ):
        await hocus.open("m")
        await saved(hocus, "m", "")
        _, text = await call(session, server, "GET", "/metrics")
        assert 'collab_members{protocol="hocuspocus"} 1.0' in text
        assert 'collab_members{protocol="y-websocket"} 1.0' in text
        await hocus.command("close", doc="m")

        async def closed() -> bool:
            _, text = await call(session, server, "GET", "/metrics")
            return 'collab_closes_total{code="1000",protocol="hocuspocus"} 1.0' in text

        await eventually(closed, what="the document's close counted")


# -- SyncStatus means committed ------------------------------------------------------------


@pytest.mark.timeout(120)
async def test_nothing_acknowledged_is_lost_to_sigkill(tmp_path: Path) -> None:
    """Five times: the provider types, its unsynced changes reach 0, the server is killed
    with SIGKILL at that moment; restarted, the server has every acknowledged edit."""
    db = tmp_path / "collab.db"
    expected = ""
    for run in range(5):
        server = await process.start(db, tmp_path / f"server{run}.log")
        try:
            async with provider_socket(server.port) as hocus:
                await hocus.open("durable")
                await saved(hocus, "durable", expected)
                for i in range(5):
                    await hocus.type("durable", f"{run}{i} ")
                expected += "".join(f"{run}{i} " for i in range(5))

                async def acknowledged() -> bool:
                    state = await hocus.doc_state("durable")
                    return bool(state["unsynced"] == 0 and state["text"] == expected)

                await eventually(acknowledged, timeout=10, what="acknowledged")
                server.signal(signal.SIGKILL)
                await server.wait()
        finally:
            if server.process.returncode is None:
                server.signal(signal.SIGKILL)
                await server.wait()
    server = await process.start(db, tmp_path / "final.log")
    try:
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{server.port}/api/docs/durable/content"
            async with session.get(url) as response:
                assert await response.text() == expected
    finally:
        server.signal(signal.SIGTERM)
        await server.wait()


async def test_the_acknowledgement_waits_for_the_group_commit(config: Config) -> None:
    """With a 1.5 s group window a provider's edit is relayed at once but acknowledged
    only once it is committed: "unsynced" stays 1 until the commit, then 0."""
    async with (
        start_server(config.replace(commit_interval=1.5)) as server,
        provider_socket(server.port) as hocus,
    ):
        await hocus.open("slow")
        await saved(hocus, "slow", "")
        store = server.app[HUB].store
        commits = store.commits
        await hocus.type("slow", "typed")

        async def acknowledged() -> bool:
            return bool((await hocus.doc_state("slow"))["unsynced"] == 0)

        await eventually(lambda: store.backlog_bytes > 0, what="queued")
        assert not await acknowledged()  # relayed and queued, not yet committed
        await eventually(acknowledged, timeout=10, what="acknowledged after the commit")
        assert store.commits > commits


# -- restarts and several nodes ------------------------------------------------------------


@pytest.mark.timeout(120)
async def test_the_provider_reconnects_after_a_restart_and_uploads_offline_edits(
    tmp_path: Path,
) -> None:
    """The server stops (SIGTERM) while the provider types; started again on the same
    port, the provider reconnects by itself and its offline edit reaches the store."""
    db = tmp_path / "collab.db"
    port = process.free_port()
    server = await process.start(db, tmp_path / "one.log", port=port)
    async with provider_socket(port) as hocus:
        try:
            await hocus.open("again")
            await hocus.type("again", "before ")
            await saved(hocus, "again", "before ")
            server.signal(signal.SIGTERM)
            assert await server.wait() == 0
            await hocus.type("again", "offline")
            server = await process.start(db, tmp_path / "two.log", port=port)
            await saved(hocus, "again", "before offline")
        finally:
            if server.process.returncode is None:
                server.signal(signal.SIGTERM)
                await server.wait()
    server = await process.start(db, tmp_path / "three.log", port=port)
    try:
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{port}/api/docs/again/content"
            async with session.get(url) as response:
                assert await response.text() == "before offline"
    finally:
        server.signal(signal.SIGTERM)
        await server.wait()


@pytest.mark.timeout(120)
async def test_hocuspocus_and_ws_members_on_two_nodes(tmp_path: Path) -> None:
    """A provider on one node and a y-websocket client on another (PostgreSQL and Redis)
    see each other's edits and presence; the provider's edits are acknowledged after the
    commit on its own node."""
    redis_url = await require_redis()
    async with postgres_database() as db:
        nodes = [
            await process.start(db, tmp_path / f"node{i}.log", "--redis", redis_url)
            for i in range(2)
        ]
        try:
            async with provider_socket(nodes[0].port) as hocus:
                js = await JsClient.start(nodes[1].base, "across", "wanda")
                try:
                    await hocus.open("across", name="hilda")
                    await eventually(js.synced, what="js synced")
                    await hocus.type("across", "node one ")
                    await saved(hocus, "across", "node one ")

                    async def js_has(text: str) -> bool:
                        return bool(await js.text() == text)

                    await eventually(lambda: js_has("node one "), what="relayed")
                    await js.insert(9, "node two")
                    await saved(hocus, "across", "node one node two")

                    def js_sees_hilda() -> bool:
                        return any(
                            (s.get("user") or {}).get("name") == "hilda"
                            for e in js.events
                            if e["event"] == "awareness"
                            for s in e["states"].values()
                        )

                    await eventually(js_sees_hilda, what="presence across nodes")
                finally:
                    await js.quit()
        finally:
            for node in nodes:
                node.signal(signal.SIGTERM)
            for node in nodes:
                await node.wait(20)


async def test_each_session_gets_the_broadcast_under_its_own_address(
    server: Server, session: aiohttp.ClientSession
) -> None:
    """Sessions of one document with different addresses (4.x session awareness adds
    ``\\0sessionId``) each get a relayed update framed with their own address, however
    their turns interleave in the fan-out (which reuses one encoding per address)."""
    addresses = [hp.Address("shared"), hp.Address("shared", "s1"), hp.Address("shared")]
    sockets = []
    for address in addresses:
        ws = await _raw(server, session)
        await ws.send_bytes(hp.encode_token(address, ""))
        assert isinstance(hp.decode(await _next_binary(ws)), hp.Authenticated)
        sockets.append(ws)
    async with editor(session, server.url("shared")) as member:
        member.text += "hello"
        for ws, address in zip(sockets, addresses, strict=True):
            while True:
                message = hp.decode(await _next_binary(ws))
                assert message.address == address  # type: ignore[union-attr]
                if isinstance(message, hp.Sync) and isinstance(message.body, SyncUpdate):
                    break
    for ws in sockets:
        await ws.close()
