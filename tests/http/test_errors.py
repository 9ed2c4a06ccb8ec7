"""One HTTP error model on a real server: the same mistake gets the same JSON answer on
every /api route (parametrized over the app's own route table)."""

from __future__ import annotations

import aiohttp
import pytest

from collab.http.openapi import Route
from tests.conftest import Server
from tests.http.api import call
from tests.http.routes import ROOM_ROUTES, url_of


@pytest.mark.parametrize("route", ROOM_ROUTES)
async def test_unknown_document_is_404_json_on_every_document_route(
    session: aiohttp.ClientSession, server: Server, route: Route
) -> None:
    """Every route of a document answers 404 with a JSON error for an unknown one."""
    body = {"ops": [{"op": "insert", "index": 0, "text": "a"}], "text": "a", "seq": 0}
    body |= {"name": "label"} if route.path.endswith("named-versions") else {}
    status, answer = await call(session, server, route.method, url_of(route, "nope"), body)
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
