"""Token routes: revocation (by the API, by the CLI, in open mode) and /api/me."""

from __future__ import annotations

import asyncio

import aiohttp
import jwt
import pytest

from collab.auth import Access, mint
from collab.config import Config
from collab.errors import CloseCode
from collab.tools.cli import main
from tests.conftest import Server, raw_client, start_server
from tests.http.api import SECRET, call, jti_of, token


async def test_revocation_by_api_closes_live_sockets_and_blocks_http(
    session: aiohttp.ClientSession, auth_server: Server
) -> None:
    """An admin's POST /api/tokens/revoke closes the token's live sockets with 4401 at
    once and its HTTP requests get 401; other tokens carry on; non-admins get 403."""
    server = auth_server
    admin = mint(SECRET, user_id="root", docs=[], admin=True)
    victim = token(name="Vic", user="vic")
    bystander = token(user="by")
    async with (
        raw_client(session, server.url("doc", f"token={victim}")) as doomed,
        raw_client(session, server.url("doc", f"token={bystander}")) as fine,
    ):
        await doomed.handshake()
        await fine.handshake()
        status, error = await call(
            session, server, "POST", "/api/tokens/revoke", {"jti": jti_of(victim)}, token=victim
        )
        assert (status, error) == (403, {"error": "only an admin token may revoke tokens"})
        status, result = await call(
            session, server, "POST", "/api/tokens/revoke", {"jti": jti_of(victim)}, token=admin
        )
        assert status == 200
        assert result == {"jti": jti_of(victim), "revoked": True, "already": False, "closed": 1}
        assert await doomed.closed_with() == CloseCode.UNAUTHORIZED
        assert doomed.ws.close_code == 4401
        assert not fine.ws.closed
    status, error = await call(session, server, "GET", "/api/me", token=victim)
    assert (status, error) == (401, {"error": "token revoked"})
    status, error = await call(session, server, "GET", "/api/docs/doc/content", token=victim)
    assert (status, error) == (401, {"error": "token revoked"})
    async with raw_client(session, server.url("doc", f"token={victim}")) as retry:
        assert await retry.closed_with() == CloseCode.UNAUTHORIZED
    assert (await call(session, server, "GET", "/api/me", token=bystander))[0] == 200

    status, again = await call(
        session, server, "POST", "/api/tokens/revoke", {"token": victim}, token=admin
    )
    assert (status, again["already"], again["closed"]) == (200, True, 0)
    for body, message in [
        ({}, "give the token's id"),
        ({"jti": "a", "token": victim}, "give the token's id"),
        ({"jti": ""}, "bad jti"),
        ({"token": "not-a-token"}, "not a token"),
        ([], "must be a JSON object"),
    ]:
        status, error = await call(
            session, server, "POST", "/api/tokens/revoke", body, token=admin
        )
        assert status == 400 and message in error["error"], body
    status, error = await call(session, server, "POST", "/api/tokens/revoke", {"jti": "x"})
    assert status == 401


async def test_revocation_by_cli_reaches_a_running_server(
    session: aiohttp.ClientSession,
    auth_server: Server,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`collab token revoke JTI` writes the database; the running server finds it within
    revocation_poll and closes the token's socket with 4401; it survives a restart."""
    server = auth_server
    victim = token(user="vic", expires_in=3600)
    async with raw_client(session, server.url("doc", f"token={victim}")) as doomed:
        await doomed.handshake()
        argv = ["token", "revoke", jti_of(victim), "--db", server.config.db]
        assert await asyncio.to_thread(main, argv) == 0
        assert "revoked" in capsys.readouterr().out
        assert await doomed.closed_with(timeout=5) == CloseCode.UNAUTHORIZED
    argv = ["token", "revoke", victim, "--db", server.config.db]  # the whole token works too
    assert await asyncio.to_thread(main, argv) == 0
    assert "already revoked" in capsys.readouterr().out
    async with start_server(server.config) as restarted:
        status, error = await call(session, restarted, "GET", "/api/me", token=victim)
        assert (status, error) == (401, {"error": "token revoked"})


async def test_revocation_in_open_mode_and_admin_tokens(
    session: aiohttp.ClientSession, server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without auth anyone may revoke (there are no tokens to protect); `collab token
    create --admin` mints a token with the admin claim, and --docs is needed otherwise."""
    status, result = await call(session, server, "POST", "/api/tokens/revoke", {"jti": "j1"})
    assert (status, result["revoked"]) == (200, True)
    argv = ["token", "create", "--user", "root", "--admin", "--auth-secret", SECRET]
    assert await asyncio.to_thread(main, argv) == 0
    minted = capsys.readouterr().out.split()[-1]
    claims = jwt.decode(minted, SECRET, algorithms=["HS256"])
    assert claims["admin"] is True and claims["docs"] == []
    argv = ["token", "create", "--user", "u", "--auth-secret", SECRET]
    assert await asyncio.to_thread(main, argv) == 2
    assert "--docs" in capsys.readouterr().err


async def test_me_in_open_mode(server: Server, session: aiohttp.ClientSession) -> None:
    """Without auth everyone is anonymous and may write every document."""
    async with session.get(f"{server.http}/api/me?room=any/thing") as response:
        assert await response.json() == {
            "auth": False,
            "user": None,
            "name": None,
            "access": "write",
        }


async def test_me_with_auth(config: Config, session: aiohttp.ClientSession) -> None:
    """With auth on, /api/me says who the token is and what it may do with a room."""
    secret = "s3cret-for-tests-only-0123456789abcdef"
    token = mint(secret, user_id="ann", name="Ann", docs=[("team/*", Access.READ)])
    async with start_server(config.replace(auth_secret=secret)) as server:
        async with session.get(f"{server.http}/api/me") as response:
            assert response.status == 401
            assert await response.json() == {"error": "missing token"}
        headers = {"Authorization": f"Bearer {token}"}
        for room, access in [("team/plan", "read"), ("private/diary", "none")]:
            async with session.get(
                f"{server.http}/api/me", params={"room": room}, headers=headers
            ) as response:
                body = await response.json()
                assert body == {"auth": True, "user": "ann", "name": "Ann", "access": access}
