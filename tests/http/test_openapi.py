"""The /api route table: no path matches two routes (so registration order cannot matter),
and /api/openapi.json describes exactly the registered routes, bodies from their models."""

from __future__ import annotations

import itertools
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from collab import __version__
from collab.config import Config
from collab.http.app import API, create_app
from collab.http.models import PatchContent, ReplaceContent, model
from collab.http.openapi import openapi_path, spec
from tests.conftest import Server
from tests.http.api import call


def _words() -> set[str]:
    """Every literal path part after ``{room}`` in the table."""
    return {
        part
        for route in API
        for part in openapi_path(route.path).partition("{room}")[2].split("/")
        if part and not part.startswith("{")
    }


def _probes() -> list[tuple[str, str]]:
    """(method, path) for every route, with rooms and parameters that look like routes."""
    words = sorted(_words())
    rooms = ["a", *(f"a/{w}" for w in words), *(f"a/{w}/1" for w in words), "a/versions/latest"]
    values = ["1", "latest", "abc", *words]
    probes = []
    for route in API:
        path = openapi_path(route.path)
        parameters = values if "{seq}" in path or "{id}" in path else ["1"]
        for room, value in itertools.product(rooms, parameters):
            probes.append(
                (
                    route.method,
                    path.replace("{room}", room).replace("{seq}", value).replace("{id}", value),
                )
            )
    return probes


async def _matches(app: web.Application, method: str, path: str) -> int:
    request = make_mocked_request(method, path, app=app)
    count = 0
    for resource in app.router.resources():
        match, _ = await resource.resolve(request)
        count += match is not None
    return count


async def test_no_path_matches_two_routes(config: Config) -> None:
    """Each path a route serves, even with room names ending in another route's words,
    matches exactly one registered route for its method."""
    app = create_app(config)
    overlapping = [
        (method, path) for method, path in _probes() if await _matches(app, method, path) != 1
    ]
    assert overlapping == []


async def test_registration_order_does_not_change_dispatch(config: Config) -> None:
    """The table registered in reverse order sends every probe to the same handler."""
    forward, backward = web.Application(), web.Application()
    for app, routes in ((forward, API), (backward, tuple(reversed(API)))):
        for route in routes:
            app.router.add_route(route.method, route.path, route.handler)

    async def handler(app: web.Application, method: str, path: str) -> Any:
        match = await app.router.resolve(make_mocked_request(method, path, app=app))
        return match.route.handler

    for method, path in _probes():
        assert await handler(forward, method, path) == await handler(backward, method, path)


async def test_spec_describes_exactly_the_registered_api_routes(
    session: aiohttp.ClientSession, server: Server
) -> None:
    """Every /api route of the running app is in /api/openapi.json and nothing else is."""
    status, document = await call(session, server, "GET", "/api/openapi.json")
    assert status == 200
    registered = {
        (openapi_path(route.resource.canonical), route.method.lower())
        for route in server.app.router.routes()
        if route.resource is not None
        and route.resource.canonical.startswith("/api")
        and route.method != "HEAD"
    }
    described = {
        (path, method)
        for path, item in document["paths"].items()
        for method in item
        if method != "parameters"
    }
    assert registered == described


def test_request_bodies_are_the_models_schemas() -> None:
    """Each JSON body in the document is its model's JSON schema (PATCH also a bare list,
    PUT content also a ProseMirror document)."""
    document = spec(API, __version__)
    schemas = document["components"]["schemas"]
    for route in API:
        if route.body is None:
            continue
        name = route.body
        assert (
            schemas[name]["properties"]
            == model(name).model_json_schema(ref_template="#/components/schemas/{model}")[
                "properties"
            ]
        )
        item = document["paths"][openapi_path(route.path)][route.method.lower()]
        schema = item["requestBody"]["content"]["application/json"]["schema"]
        if route.body == PatchContent.__name__:
            assert schema["oneOf"][0]["type"] == "array"
        elif route.body == ReplaceContent.__name__:  # text, or a ProseMirror document
            assert schema == {
                "oneOf": [
                    {"$ref": "#/components/schemas/ReplaceContent"},
                    {"$ref": "#/components/schemas/ReplaceRichContent"},
                ]
            }
            rich = model("ReplaceRichContent").model_json_schema()
            assert schemas["ReplaceRichContent"]["properties"] == rich["properties"]
        else:
            assert schema == {"$ref": f"#/components/schemas/{name}"}


def test_every_error_response_is_a_documented_json_error() -> None:
    """Every documented operation names its error responses, all JSON errors."""
    document = spec(API, __version__)
    for item in document["paths"].values():
        for method, operation in item.items():
            if method == "parameters":
                continue
            for status, response in operation["responses"].items():
                if int(status) >= 400:
                    assert response["$ref"] == f"#/components/responses/E{status}"
                    assert f"E{status}" in document["components"]["responses"]
