"""Request bodies: one size limit and one JSON parser for every route (pydantic models)."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from typing import Any

import aiohttp
import pytest

from collab.config import Config
from collab.errors import BadRequest
from collab.history.edit import Delete, Insert
from collab.http.models import PatchContent, parse
from collab.http.openapi import Route
from tests.conftest import Server, start_server
from tests.http.api import call
from tests.http.routes import BODY_ROUTES, url_of


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
            url_of(route, "doc"),
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
        url_of(route, "doc"),
        data=b"{nope",
        headers={"Content-Type": "application/json"},
    )
    assert (status, answer) == (400, {"error": "the body is not JSON"})


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


async def test_pydantic_is_not_loaded_until_a_body_is_parsed() -> None:
    """A node that never receives a request body never pays for pydantic (about 14 MB):
    the app, its routes and its OpenAPI table import without it; the first body loads it
    in a worker thread, never with blocking file reads in the event loop."""
    code = (
        "import asyncio, sys\n"
        "from blockbuster import blockbuster_ctx\n"
        "from collab.http.app import create_app\n"
        "from collab.http.body import load_models\n"
        "from collab.tools import serve\n"
        "assert 'pydantic' not in sys.modules, 'pydantic loaded at start'\n"
        "with blockbuster_ctx('collab'):\n"
        "    asyncio.run(load_models())\n"
        "assert 'pydantic' in sys.modules\n"
    )
    child = await asyncio.create_subprocess_exec(sys.executable, "-c", code)
    assert await child.wait() == 0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "give a list of operations"),
        ([], "give a list of operations"),
        ("insert", "give a list of operations"),
        ([1], "operation 0: expected an object"),
        ([{"op": "insert", "index": True, "text": "a"}], "index must be"),
        ([{"op": "delete", "index": 0, "length": -1}], "length >= 0"),
        ([{"op": "replace", "index": 0}], "insert or delete"),
        ([{"op": "delete", "index": 0, "length": 0}] * 1001, "too many operations"),
    ],
)
def test_malformed_operations(body: Any, message: str) -> None:
    """Malformed PATCH bodies are a BadRequest (400) naming the operation."""
    with pytest.raises(BadRequest, match=message):
        parse(PatchContent, json.dumps(body).encode())


def test_operations_as_a_list_or_an_object() -> None:
    """A bare list and {"ops": [...]} read the same."""
    ops = [{"op": "insert", "index": 0, "text": "a"}, {"op": "delete", "index": 1, "length": 2}]
    bare = parse(PatchContent, json.dumps(ops).encode()).operations()
    wrapped = parse(PatchContent, json.dumps({"ops": ops}).encode()).operations()
    assert bare == wrapped == [Insert(0, "a"), Delete(1, 2)]
