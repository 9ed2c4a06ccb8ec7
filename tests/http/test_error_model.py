"""One HTTP error model on a real server: the same mistake gets the same JSON answer on
every /api route (parametrized over the app's own route table)."""

from __future__ import annotations

import re

import aiohttp
import pytest

from collab.config import Config
from collab.http.app import API
from collab.http.openapi import Route, openapi_path
from tests.conftest import Server, start_server
from tests.http.test_documents import call

BODY_ROUTES = [pytest.param(r, id=f"{r.method} {openapi_path(r.path)}") for r in API if r.body]
ROOM_ROUTES = [
    pytest.param(r, id=f"{r.method} {openapi_path(r.path)}") for r in API if "{room" in r.path
]


def _url(route: Route, room: str) -> str:
    path = openapi_path(route.path)
    return path.replace("{room}", room).replace("{seq}", "1").replace("{id}", "1")


@pytest.mark.parametrize("route", BODY_ROUTES)
async def test_oversized_body_is_413_json_on_every_body_route(
    session: aiohttp.ClientSession, config: Config, route: Route
) -> None:
    """A body over max_message_size is refused with 413 and a JSON error on every route
    that reads one, whatever that route's own limit."""
    async with start_server(config.replace(max_message_size=70_000)) as server:
        await call(session, server, "POST", "/api/docs", {"name": "doc"})
        body = b'{"text": "' + b"x" * 80_000 + b'"}'
        status, answer = await call(
            session,
            server,
            route.method,
            _url(route, "doc"),
            data=body,
            headers={"Content-Type": "application/json"},
        )
    assert status == 413 and "larger than" in answer["error"], answer


@pytest.mark.parametrize("route", BODY_ROUTES)
async def test_malformed_json_is_400_on_every_json_route(
    session: aiohttp.ClientSession, server: Server, route: Route
) -> None:
    """A body that is not JSON is 400 "the body is not JSON" on every JSON route."""
    await call(session, server, "POST", "/api/docs", {"name": "doc"})
    status, answer = await call(
        session,
        server,
        route.method,
        _url(route, "doc"),
        data=b"{nope",
        headers={"Content-Type": "application/json"},
    )
    assert (status, answer) == (400, {"error": "the body is not JSON"})


@pytest.mark.parametrize("route", ROOM_ROUTES)
async def test_unknown_document_is_404_json_on_every_document_route(
    session: aiohttp.ClientSession, server: Server, route: Route
) -> None:
    """Every route of a document answers 404 with a JSON error for an unknown one."""
    body = {"ops": [{"op": "insert", "index": 0, "text": "a"}], "text": "a", "seq": 0}
    body |= {"name": "label"} if route.path.endswith("named-versions") else {}
    status, answer = await call(session, server, route.method, _url(route, "nope"), body)
    assert status == 404 and "nope" in answer["error"], answer


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_unknown_route_under_api_is_404_json(
    session: aiohttp.ClientSession, server: Server, method: str
) -> None:
    """A path under /api that no route matches is 404 with a JSON error."""
    status, answer = await call(session, server, method, "/api/nothing/here")
    assert (status, answer) == (404, {"error": "not found"})


async def test_method_not_allowed_under_api_is_405_json_with_allow(
    session: aiohttp.ClientSession, server: Server
) -> None:
    """A method a /api path does not take is 405 JSON, with the Allow header."""
    async with session.put(server.http + "/api/me") as response:
        assert response.status == 405
        assert "GET" in response.headers["Allow"]
        assert (await response.json()) == {"error": "method not allowed"}


async def test_unknown_route_elsewhere_keeps_aiohttp_answer(
    session: aiohttp.ClientSession, server: Server
) -> None:
    """Outside /api an unknown path is aiohttp's plain 404, not JSON."""
    async with session.get(server.http + "/nothing/here") as response:
        assert response.status == 404 and response.content_type == "text/plain"


async def test_oversized_restore_and_named_version_bodies_are_413(
    session: aiohttp.ClientSession, server: Server
) -> None:
    """restore and named-versions refuse a body over their 64 KiB limit with 413 (they
    answered 400 before), like every other route."""
    await call(session, server, "POST", "/api/docs", {"name": "doc"})
    body = {"name": "n" * 70_000}
    for suffix in ("/restore", "/named-versions"):
        status, answer = await call(session, server, "POST", "/api/docs/doc" + suffix, body)
        assert status == 413 and re.search(r"larger than \d+ bytes", answer["error"]), answer
