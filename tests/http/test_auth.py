"""Permissions over real WebSockets, and limits."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from typing import Any

import aiohttp
import pytest
from pycrdt import Doc, Text

from collab.auth import Access, mint
from collab.config import Config
from collab.errors import CloseCode
from collab.http.state import HUB
from collab.sync.protocol import AwarenessEntry, encode_awareness, encode_update
from tests.conftest import ROOT, TIMEOUT_FACTOR, editor, eventually, raw_client, start_server

SECRET = "test-secret-0123456789abcdef0123456789"


def token(pattern: str = "*", access: Access = Access.WRITE, **kwargs: Any) -> str:
    return mint(SECRET, user_id=kwargs.pop("user", "u1"), docs=[(pattern, access)], **kwargs)


def one_update(text: str = "x") -> bytes:
    doc: Doc[Any] = Doc()
    doc.get(ROOT, type=Text).insert(0, text)
    return doc.get_update()


@pytest.fixture
def auth_config(config: Config) -> Config:
    return config.replace(auth_secret=SECRET)


async def _close_code(session: aiohttp.ClientSession, url: str, **kwargs: Any) -> int | None:
    async with raw_client(session, url, **kwargs) as client:
        return await client.closed_with()


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("", CloseCode.UNAUTHORIZED),
        ("token=garbage", CloseCode.UNAUTHORIZED),
        (f"token={mint('wrong-secret-0123456789abcdef012345', user_id='u', docs=[])}", 4401),
        (f"token={token(expires_in=1, now=time.time() - 100)}", CloseCode.UNAUTHORIZED),
        (f"token={token('team/*')}", CloseCode.FORBIDDEN),
        (f"token={token('*', Access.NONE)}", CloseCode.FORBIDDEN),
    ],
    ids=["missing", "garbage", "wrong-secret", "expired", "other-docs", "none"],
)
async def test_refused_before_the_room_loads(
    auth_config: Config, session: aiohttp.ClientSession, query: str, code: int
) -> None:
    """Bad tokens close with 4401, no access with 4403, and no room is loaded."""
    async with start_server(auth_config) as server:
        assert await _close_code(session, server.url("doc", query)) == code
        assert server.app[HUB].rooms == {}


async def test_read_only_member_receives_but_cannot_write(
    auth_config: Config, session: aiohttp.ClientSession
) -> None:
    """A read-only member gets every update; its own updates are dropped, not stored."""
    async with start_server(auth_config) as server:
        writer_url = server.url("doc", f"token={token(name='Writer')}")
        reader_url = server.url("doc", f"token={token(access=Access.READ, user='r')}")
        async with editor(session, writer_url) as writer:
            writer.text += "hello"
            async with editor(session, reader_url) as reader:
                await eventually(lambda: str(reader) == "hello")
                announce = encode_awareness([AwarenessEntry(77, 1, {"user": {"name": "r"}})])
                await reader.ws.send_bytes(announce)
                await reader.ws.send_bytes(encode_update(one_update("nope")))
                writer.text += "!"
                await eventually(lambda: str(reader) == "hello!")
                await eventually(lambda: 77 in server.app[HUB].rooms["doc"].awareness)
            assert str(writer) == "hello!"
        await server.app[HUB].store.flush()
        rows = await asyncio.to_thread(_authors, auth_config.db)
        assert rows == ["Writer", "Writer"]


def _authors(db: str) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [r[0] for r in conn.execute("SELECT author FROM updates ORDER BY seq")]


async def test_expiry_closes_a_live_connection(
    auth_config: Config, session: aiohttp.ClientSession
) -> None:
    """A token that expires while connected closes its socket with 4401."""
    async with start_server(auth_config) as server:
        # Long enough for the handshake on a loaded machine, short enough to wait for.
        short = token(expires_in=max(1, round(2 * TIMEOUT_FACTOR)))
        async with raw_client(session, server.url("doc", f"token={short}")) as client:
            await client.handshake()
            assert await client.closed_with(timeout=15) == CloseCode.UNAUTHORIZED


async def test_disallowed_origin_gets_4403(config: Config, session: aiohttp.ClientSession) -> None:
    """With allowed_origins set, another Origin is refused with 4403."""
    async with start_server(config.replace(allowed_origins="https://ok.example")) as server:
        bad = {"Origin": "https://evil.example"}
        assert await _close_code(session, server.url("d"), headers=bad) == CloseCode.FORBIDDEN
        good = {"Origin": "https://ok.example"}
        async with session.ws_connect(server.url("d"), headers=good) as ws:
            assert (await ws.receive()).type is aiohttp.WSMsgType.BINARY


async def test_room_full_gets_1013(config: Config, session: aiohttp.ClientSession) -> None:
    """Past max_room_connections members, a joiner is told to retry later (1013)."""
    async with start_server(config.replace(max_room_connections=2)) as server:
        async with editor(session, server.url("r")), editor(session, server.url("r")):
            assert await _close_code(session, server.url("r")) == CloseCode.TRY_AGAIN_LATER
            async with editor(session, server.url("other")):
                pass


async def test_server_full_gets_1013(config: Config, session: aiohttp.ClientSession) -> None:
    """Past max_connections in total, a new connection is told to retry later (1013)."""
    async with start_server(config.replace(max_connections=1)) as server:
        async with editor(session, server.url("a")):
            assert await _close_code(session, server.url("b")) == CloseCode.TRY_AGAIN_LATER


async def test_update_rate_limit_gets_1013(config: Config, session: aiohttp.ClientSession) -> None:
    """A connection sending updates faster than its budget is closed with 1013."""
    cfg = config.replace(max_updates_per_second=1, update_burst=5)
    source: Doc[Any] = Doc()
    text = source.get(ROOT, type=Text)
    updates: list[bytes] = []
    source.observe(lambda e: updates.append(e.update))
    for i in range(20):
        text += str(i % 10)
    async with start_server(cfg) as server, raw_client(session, server.url("r")) as client:
        await client.handshake()
        for update in updates:
            await client.ws.send_bytes(encode_update(update))
        assert await client.closed_with() == CloseCode.TRY_AGAIN_LATER
        # The burst of 5 covered the handshake's (empty) SyncStep2 and 4 updates.
        assert server.app[HUB].rooms["r"].seq == 4


async def test_document_size_limit_gets_4413(
    config: Config, session: aiohttp.ClientSession
) -> None:
    """An edit that would grow the document past max_document_size closes with 4413."""
    async with start_server(config.replace(max_document_size=1000)) as server:
        async with raw_client(session, server.url("r")) as client:
            await client.handshake()
            await client.ws.send_bytes(encode_update(one_update("small")))
            await client.ws.send_bytes(encode_update(one_update("x" * 2000)))
            assert await client.closed_with() == CloseCode.DOCUMENT_TOO_LARGE
        async with editor(session, server.url("r")) as late:
            assert str(late) == "small"


async def test_with_auth_only_the_token_names_the_author(
    auth_config: Config, session: aiohttp.ClientSession
) -> None:
    """With auth on, neither ``?user=``, nor a body's ``user``, nor an awareness
    ``user.name`` changes the stored author: the token's name (else its user id) is it,
    over WebSockets and REST writes alike."""
    from tests.http.api import call

    mallory = {"user": {"name": "Mallory"}}
    ann, u2, bob = token(name="Ann"), token(user="u2"), token(name="Bob", user="bob")
    async with start_server(auth_config) as server:
        status, _ = await call(
            session,
            server,
            "POST",
            "/api/docs?user=Mallory",
            {"name": "doc", "user": "Mallory"},
            token=bob,
        )
        assert status == 201
        for tok, client_id in ((ann, 31), (u2, 32)):
            url = server.url("doc", f"user=Mallory&token={tok}")
            async with editor(session, url) as live:
                await live.ws.send_bytes(encode_awareness([AwarenessEntry(client_id, 1, mallory)]))
                await eventually(lambda: client_id in server.app[HUB].rooms["doc"].awareness)
                live.text += "x"
                seq = server.app[HUB].rooms["doc"].seq
                await eventually(lambda: server.app[HUB].rooms["doc"].seq > seq, what="stored")
        put = {"text": "replaced", "user": "Mallory"}
        assert (
            await call(
                session, server, "PUT", "/api/docs/doc/content?user=Mallory", put, token=bob
            )
        )[0] == 200
        restore = {"seq": 1, "user": "Mallory"}
        assert (
            await call(
                session, server, "POST", "/api/docs/doc/restore?user=Mallory", restore, token=bob
            )
        )[0] == 200
        named = {"name": "v1", "seq": 1, "user": "Mallory"}
        status, version = await call(
            session, server, "POST", "/api/docs/doc/named-versions?user=Mallory", named, token=bob
        )
        assert status == 201 and version["author"] == "Bob", version
        await server.app[HUB].store.flush()
        authors = await asyncio.to_thread(_authors, auth_config.db)
    assert authors == ["Ann", "u2", "Bob", "Bob"]  # creating without content stores nothing


async def test_a_token_with_an_empty_subject_is_refused(
    auth_config: Config, session: aiohttp.ClientSession
) -> None:
    """A signed token whose ``sub`` is empty closes with 4401 instead of letting
    ``?user=`` pick the author."""
    import jwt

    empty = jwt.encode({"sub": "", "docs": [{"pattern": "*"}]}, SECRET, algorithm="HS256")
    async with start_server(auth_config) as server:
        url = server.url("doc", f"user=Mallory&token={empty}")
        assert await _close_code(session, url) == CloseCode.UNAUTHORIZED
