"""The ``/api`` route table's type, and the OpenAPI 3.1 document built from the table.

It builds a JSON-ready dict and does no I/O. Each route module lists its ``/api``
routes as ``Route``s; the app factory registers exactly those, and ``spec`` describes
exactly those, with the request bodies' JSON schemas taken from their models
(``models.py``), so the document cannot say anything the code does not do.

A ``{room}`` path parameter is the document's name and may contain ``/``, unencoded
(``/api/docs/team/notes/content``); each other ``/``-separated part is percent-encoded.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["READ", "WRITE", "Route", "openapi_path", "spec"]

READ = (400, 401, 403, 404, 503)
WRITE = (400, 401, 403, 404, 409, 413, 503)

_JSON = "application/json"
_REF = "#/components/schemas/{model}"
_PARAMETER = re.compile(r"\{(\w+)(?::[^}]*)?\}")
_PATH_PARAMETERS = {
    "room": ({"type": "string"}, "document name; may contain /"),
    "seq": ({"type": "string"}, "a seq, or latest"),
    "id": ({"type": "integer"}, "the named version's id"),
}
_STATUSES = {
    400: "malformed request, parameter or body",
    401: "missing, invalid, expired or revoked token",
    403: "no access to this document (or read-only, for a change; not admin, to revoke)",
    404: "unknown or deleted document (or version, root, named version, route)",
    405: "method not allowed on this path",
    409: "conflicts with what is stored (exists, not deleted, index past the end)",
    413: "too large: the body, or the document it would make (max_document_size)",
    500: "the server failed (logged; the answer says no more)",
    503: "storage is behind or unavailable; retry after Retry-After seconds",
}


@dataclass(frozen=True, slots=True)
class Route:
    """One ``/api`` route: what aiohttp registers and what the OpenAPI document says.

    ``path`` is aiohttp's pattern (``{room:.+}``); ``query`` holds ``(name, description)``
    or ``(name, description, schema)``; ``body`` names the JSON body's model (in
    ``collab.http.models``), ``text_body`` says a ``text/plain`` body is accepted too;
    ``errors`` are the statuses it can answer besides ``ok``.
    """

    method: str
    path: str
    handler: Callable[..., Awaitable[Any]]
    summary: str
    tag: str
    ok: tuple[int, str]
    errors: tuple[int, ...] = READ
    query: tuple[tuple[Any, ...], ...] = ()
    body: str | None = None
    text_body: bool = False


def openapi_path(pattern: str) -> str:
    """``pattern`` without its parameters' regular expressions: ``/a/{room}``."""
    return _PARAMETER.sub(r"{\1}", pattern)


def _parameter(name: str, where: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "description": description,
        "schema": schema,
    }


def _operation(route: Route, schemas: dict[str, Any]) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": route.summary,
        "tags": [route.tag],
        "operationId": route.handler.__name__.strip("_"),
    }
    if route.query:
        operation["parameters"] = [
            _parameter(name, "query", description, rest[0] if rest else {"type": "string"})
            for name, description, *rest in route.query
        ]
    if route.body is not None:
        from collab.http.models import model  # loaded by spec() already

        ref = {"$ref": _REF.format(model=route.body)}
        content = {_JSON: {"schema": model(route.body).openapi_schema(ref, schemas)}}
        if route.text_body:
            content = {"text/plain": {"schema": {"type": "string"}}} | content
        operation["requestBody"] = {"required": True, "content": content}
    status, description = route.ok
    responses: dict[str, Any] = {str(status): {"description": description}}
    for error in sorted({*route.errors, 500}):
        responses[str(error)] = {"$ref": f"#/components/responses/E{error}"}
    operation["responses"] = responses
    return operation


def spec(routes: Sequence[Route], version: str) -> dict[str, Any]:
    """The OpenAPI document of collab ``version``'s ``routes``."""
    # The models (and pydantic) are loaded on the first request for the document: the
    # handler awaits ``body.load_models()`` first, so this import reads no file.
    from collab.http.models import json_schemas

    definitions = json_schemas({r.body: None for r in routes if r.body}, _REF)
    schemas = {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {"error": {"type": "string", "description": "what went wrong"}},
        },
        **definitions,
    }
    paths: dict[str, Any] = {}
    for route in routes:
        path = openapi_path(route.path)
        item = paths.setdefault(path, {})
        names = _PARAMETER.findall(path)
        if names:
            item["parameters"] = [
                _parameter(name, "path", _PATH_PARAMETERS[name][1], _PATH_PARAMETERS[name][0])
                for name in names
            ]
        item[route.method.lower()] = _operation(route, schemas)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "collab",
            "version": version,
            "description": "Documents, their content and their history. Authenticate "
            "with a token as `Authorization: Bearer ...` or `?token=...` (not needed on "
            'a server without auth). Every error is JSON `{"error": "..."}`.',
        },
        "paths": paths,
        "components": {
            "responses": {
                f"E{status}": {
                    "description": text,
                    "content": {_JSON: {"schema": {"$ref": _REF.format(model="Error")}}},
                }
                for status, text in _STATUSES.items()
            },
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "query": {"type": "apiKey", "in": "query", "name": "token"},
            },
        },
        "security": [{}, {"bearer": []}, {"query": []}],
    }
