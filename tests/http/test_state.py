"""identify(): who an HTTP or WebSocket request is, from ``?token=`` or a Bearer header,
through a real server with auth on (``GET /api/me`` answers with the identity)."""

from __future__ import annotations

import aiohttp
import pytest

from collab.auth import Access, mint
from collab.config import Config
from collab.http.state import HUB
from tests.conftest import start_server

SECRET = "test-secret-0123456789abcdef0123456789"


def _token(user: str = "u1", *, admin: bool = False) -> str:
    return mint(SECRET, user_id=user, docs=[("*", Access.WRITE)], admin=admin)


@pytest.fixture
def auth_config(config: Config) -> Config:
    return config.replace(auth_secret=SECRET)


async def test_a_query_token_identifies_the_request(
    auth_config: Config, session: aiohttp.ClientSession
) -> None:
    """``?token=`` names the caller."""
    async with start_server(auth_config) as server:
        async with session.get(server.http + "/api/me", params={"token": _token("ann")}) as r:
            assert r.status == 200 and (await r.json())["user"] == "ann"


async def test_a_bearer_header_identifies_the_request(
    auth_config: Config, session: aiohttp.ClientSession
) -> None:
    """An ``Authorization: Bearer`` header names the caller like ``?token=``."""
    async with start_server(auth_config) as server:
        headers = {"Authorization": f"Bearer {_token('bob')}"}
        async with session.get(server.http + "/api/me", headers=headers) as r:
            assert r.status == 200 and (await r.json())["user"] == "bob"


async def test_a_bearer_header_opens_a_websocket(
    auth_config: Config, session: aiohttp.ClientSession
) -> None:
    """A token in the Authorization header lets a WebSocket join (SyncStep1 arrives)."""
    async with start_server(auth_config) as server:
        headers = {"Authorization": f"Bearer {_token()}"}
        async with session.ws_connect(server.url("doc"), headers=headers) as ws:
            msg = await ws.receive()
            assert msg.type is aiohttp.WSMsgType.BINARY


async def test_a_missing_token_is_401(auth_config: Config, session: aiohttp.ClientSession) -> None:
    """With auth on, a request without a token is refused with 401."""
    async with start_server(auth_config) as server:
        async with session.get(server.http + "/api/me") as r:
            assert r.status == 401


async def test_a_revoked_token_is_401(auth_config: Config, session: aiohttp.ClientSession) -> None:
    """A token revoked through the API is refused with 401 on the next request."""
    victim = _token("eve")
    admin = {"Authorization": f"Bearer {_token('ops', admin=True)}"}
    async with start_server(auth_config) as server:
        url = server.http + "/api/me"
        async with session.get(url, params={"token": victim}) as r:
            assert r.status == 200
        revoke = server.http + "/api/tokens/revoke"
        async with session.post(revoke, json={"token": victim}, headers=admin) as r:
            assert r.status == 200 and (await r.json())["revoked"] is True
        assert server.app[HUB].revoked
        async with session.get(url, params={"token": victim}) as r:
            assert r.status == 401
