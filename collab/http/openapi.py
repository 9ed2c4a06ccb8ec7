"""The OpenAPI 3.1 description of every ``/api`` route, served at ``/api/openapi.json``.

PURE: builds a JSON-ready dict; never imports aiohttp. ``tests/test_openapi.py`` walks the
application's router and fails when a registered ``/api`` route is missing here, so the
document cannot silently fall behind the code.

A ``{room}`` path parameter is the document's name and may contain ``/``, unencoded
(``/api/docs/team/notes/content``); each other ``/``-separated part is percent-encoded.
"""

from __future__ import annotations

from typing import Any

__all__ = ["spec"]

_JSON = "application/json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _body(schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    body: dict[str, Any] = {"required": True, "content": {_JSON: {"schema": schema}}}
    if description:
        body["description"] = description
    return body


def _ok(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description}
    if schema is not None:
        response["content"] = {_JSON: {"schema": schema}}
    return response


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(s): {"$ref": f"#/components/responses/E{s}"} for s in statuses}


def _query(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema or {"type": "string"},
    }


_ROOM = {"$ref": "#/components/parameters/room"}
_INT = {"type": "integer"}
_STR = {"type": "string"}
_TIME = {"type": "string", "format": "date-time"}
_READ = (400, 401, 403, 404)
_WRITE = (400, 401, 403, 404, 409, 413, 503)


def _op(
    summary: str,
    responses: dict[str, Any],
    *,
    tag: str,
    parameters: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
    errors: tuple[int, ...] = _READ,
) -> dict[str, Any]:
    operation: dict[str, Any] = {"summary": summary, "tags": [tag]}
    if parameters:
        operation["parameters"] = parameters
    if body is not None:
        operation["requestBody"] = body
    operation["responses"] = responses | _errors(*errors)
    return operation


def _history_paths() -> dict[str, Any]:
    tag = "history"
    version_params = [
        _query("format", "json (default), yjs or text", {"enum": ["json", "yjs", "text"]}),
        _query("root", "for format=text: the root to read (default content)"),
    ]
    return {
        "/api/docs/{room}/history": {
            "parameters": [_ROOM],
            "get": _op(
                "The timeline, newest first",
                {"200": _ok("a page of the timeline", _ref("Timeline"))},
                tag=tag,
                parameters=[
                    _query("limit", "entries, 1-200 (default 20)", _INT),
                    _query("cursor", "the previous page's next"),
                    _query("gap", "seconds that end an entry (default 300)", {"type": "number"}),
                    _query("raw", "1: one entry per stored update"),
                ],
            ),
        },
        "/api/docs/{room}/versions": {
            "parameters": [_ROOM],
            "get": _op(
                "The version at a time (?at=), else the newest",
                {"200": _ok("the version", _ref("Version"))},
                tag=tag,
                parameters=[_query("at", "ISO-8601 time or epoch milliseconds"), *version_params],
            ),
        },
        "/api/docs/{room}/versions/{seq}": {
            "parameters": [
                _ROOM,
                {
                    "name": "seq",
                    "in": "path",
                    "required": True,
                    "schema": _STR,
                    "description": "a seq, or latest",
                },
            ],
            "get": _op(
                "Version seq: the document right after update seq",
                {"200": _ok("the version", _ref("Version"))},
                tag=tag,
                parameters=version_params,
            ),
        },
        "/api/docs/{room}/diff": {
            "parameters": [_ROOM],
            "get": _op(
                "What changed in a text root between two versions, and who changed it",
                {"200": _ok("spans", _ref("Spans"))},
                tag=tag,
                parameters=[
                    _query("from", "the older version's seq"),
                    _query("from_at", "... or its time"),
                    _query("to", "the newer version's seq (default the newest)"),
                    _query("to_at", "... or its time"),
                    _query("root", "text root (default content)"),
                ],
            ),
        },
        "/api/docs/{room}/blame": {
            "parameters": [_ROOM],
            "get": _op(
                "Who wrote each span of a text root in a version",
                {"200": _ok("spans", _ref("Spans"))},
                tag=tag,
                parameters=[_query("seq", "version"), _query("at", "time"), _query("root", "")],
            ),
        },
        "/api/docs/{room}/restore": {
            "parameters": [_ROOM],
            "post": _op(
                "Make a past version's content current, as one new change relayed live",
                {"200": _ok("restored", _ref("Restored"))},
                tag=tag,
                body=_body(_ref("RestoreRequest")),
                errors=_WRITE,
            ),
        },
        "/api/docs/{room}/named-versions": {
            "parameters": [_ROOM],
            "get": _op(
                "Named versions, newest version first",
                {
                    "200": _ok(
                        "named versions",
                        {
                            "type": "object",
                            "properties": {
                                "named_versions": {"type": "array", "items": _ref("NamedVersion")}
                            },
                        },
                    )
                },
                tag=tag,
            ),
            "post": _op(
                "Name a version",
                {"201": _ok("the new named version", _ref("NamedVersion"))},
                tag=tag,
                body=_body(
                    {
                        "type": "object",
                        "required": ["name"],
                        "properties": {"name": _STR, "seq": _INT, "at": _STR, "user": _STR},
                    }
                ),
                errors=_WRITE,
            ),
        },
        "/api/docs/{room}/named-versions/{id}": {
            "parameters": [
                _ROOM,
                {"name": "id", "in": "path", "required": True, "schema": _INT},
            ],
            "delete": _op(
                "Remove a named version",
                {"204": _ok("removed")},
                tag=tag,
                errors=(400, 401, 403, 404),
            ),
        },
        "/api/docs/{room}/playback": {
            "parameters": [_ROOM],
            "get": _op(
                "A base version and the updates after it, for a history slider",
                {"200": _ok("playback", {"type": "object"})},
                tag=tag,
                parameters=[
                    _query("from", "base version (default 0)"),
                    _query("to", "last version (default the newest)"),
                    _query("limit", "updates, 1-5000 (default 1000)", _INT),
                    _query("base", "0: leave the base out"),
                ],
            ),
        },
        "/api/docs/{room}/samples": {
            "parameters": [_ROOM],
            "get": _op(
                "Versions spread evenly between two versions",
                {"200": _ok("samples", {"type": "object"})},
                tag=tag,
                parameters=[
                    _query("from", "first version"),
                    _query("to", "last version"),
                    _query("count", "1-200 (default 20)", _INT),
                    _query("root", "root whose value is returned (default content)"),
                ],
            ),
        },
        "/api/docs/{room}/info": {
            "parameters": [_ROOM],
            "get": _op(
                "The document's newest version and what its history costs",
                {"200": _ok("info", {"type": "object"})},
                tag=tag,
            ),
        },
    }


def _document_paths() -> dict[str, Any]:
    tag = "documents"
    text_response = {
        "description": "the content root's text (format=text)",
        "content": {
            "text/plain": {"schema": _STR},
            _JSON: {"schema": _ref("Content")},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
    return {
        "/api/docs": {
            "get": _op(
                "Documents, most recently edited first (deleted ones left out)",
                {"200": _ok("a page of documents", _ref("DocumentList"))},
                tag=tag,
                parameters=[
                    _query("q", "name contains this, ignoring case"),
                    _query("limit", "1-200 (default 50)", _INT),
                    _query("cursor", "the previous page's next"),
                ],
                errors=(400, 401),
            ),
            "post": _op(
                "Create a document, optionally with text in its content root",
                {"201": _ok("created", _ref("Created"))},
                tag=tag,
                body=_body(_ref("CreateRequest")),
                errors=_WRITE,
            ),
        },
        "/api/docs/{room}": {
            "parameters": [_ROOM],
            "delete": _op(
                "Delete softly: hidden, its room closed (4404), restorable for deleted_retention",
                {"200": _ok("deleted", _ref("Deleted"))},
                tag=tag,
            ),
        },
        "/api/docs/{room}/undelete": {
            "parameters": [_ROOM],
            "post": _op(
                "Restore a deleted document, with its history",
                {"200": _ok("restored", _ref("Created"))},
                tag=tag,
                errors=(400, 401, 403, 404, 409),
            ),
        },
        "/api/docs/{room}/content": {
            "parameters": [_ROOM],
            "get": _op(
                "The newest version: text (default), JSON of every root, or a Yjs update",
                {"200": text_response},
                tag=tag,
                parameters=[
                    _query("format", "text, json or yjs", {"enum": ["text", "json", "yjs"]}),
                    _query("root", "for format=text: the root to read (default content)"),
                ],
            ),
            "put": _op(
                "Replace the content text: applied as a minimal edit, relayed live, stored "
                "with the caller as author",
                {"200": _ok("applied", _ref("Changed"))},
                tag=tag,
                body={
                    "required": True,
                    "content": {
                        "text/plain": {"schema": _STR},
                        _JSON: {"schema": _ref("ReplaceRequest")},
                    },
                },
                errors=_WRITE,
            ),
            "patch": _op(
                "Insert and delete in the content text, in order; indexes count code points",
                {"200": _ok("applied", _ref("Changed"))},
                tag=tag,
                body=_body(
                    {
                        "oneOf": [
                            {"type": "array", "items": _ref("Operation")},
                            {
                                "type": "object",
                                "properties": {
                                    "ops": {"type": "array", "items": _ref("Operation")},
                                    "user": _STR,
                                },
                            },
                        ]
                    }
                ),
                errors=_WRITE,
            ),
        },
        "/api/me": {
            "get": _op(
                "Who the caller is, and their access to ?room=",
                {"200": _ok("identity", _ref("Me"))},
                tag="auth",
                parameters=[_query("room", "a document name")],
                errors=(401,),
            ),
        },
        "/api/tokens/revoke": {
            "post": _op(
                "Revoke a token now: its sockets close with 4401, its requests get 401 "
                "(admin tokens only; every server applies it within revocation_poll)",
                {"200": _ok("revoked", _ref("Revoked"))},
                tag="auth",
                body=_body(_ref("RevokeRequest")),
                errors=(400, 401, 403),
            ),
        },
        "/api/openapi.json": {
            "get": {
                "summary": "This document",
                "tags": ["meta"],
                "responses": {"200": _ok("OpenAPI 3.1", {"type": "object"})},
            },
        },
    }


def _schemas() -> dict[str, Any]:
    def obj(required: list[str], **properties: Any) -> dict[str, Any]:
        return {"type": "object", "required": required, "properties": properties}

    nullable_str = {"type": ["string", "null"]}
    span = obj(
        ["op", "text"],
        op={"enum": ["equal", "insert", "delete"]},
        text=_STR,
        author=nullable_str,
        first_seq=_INT,
        last_seq=_INT,
        start=_TIME,
        end=_TIME,
    )
    return {
        "Error": obj(["error"], error={"type": "string", "description": "what went wrong"}),
        "DocumentList": obj(
            ["docs", "next"],
            docs={
                "type": "array",
                "items": obj(
                    ["name"],
                    name=_STR,
                    created=_TIME,
                    updated=_TIME,
                    size=_INT,
                    updates=_INT,
                    online=_INT,
                    people={"type": "array", "items": obj([], name=_STR, color=_STR)},
                    access={"enum": ["write", "read"]},
                ),
            },
            next=nullable_str,
        ),
        "CreateRequest": obj(
            ["name"],
            name={"type": "string", "description": "the document (room) name"},
            content={"type": "string", "description": "initial text of the content root"},
            user={"type": "string", "description": "author, on a server without auth"},
        ),
        "Created": obj(["name", "created", "seq"], name=_STR, created=_TIME, seq=_INT),
        "Deleted": obj(
            ["name", "deleted", "restorable_until"],
            name=_STR,
            deleted=_TIME,
            restorable_until=_TIME,
        ),
        "Content": obj(
            ["name", "seq", "time", "content"],
            name=_STR,
            seq=_INT,
            time=_TIME,
            content={
                "type": "object",
                "description": "every root: text as a string, "
                "maps and arrays as JSON, XML as a string",
            },
        ),
        "ReplaceRequest": obj(["text"], text=_STR, user=_STR),
        "Operation": {
            "oneOf": [
                obj(["op", "index", "text"], op={"const": "insert"}, index=_INT, text=_STR),
                obj(["op", "index", "length"], op={"const": "delete"}, index=_INT, length=_INT),
            ]
        },
        "Changed": obj(
            ["name", "seq", "changed"], name=_STR, seq=_INT, changed={"type": "boolean"}
        ),
        "Me": obj(
            ["auth", "user", "name"],
            auth={"type": "boolean"},
            user=nullable_str,
            name=nullable_str,
            access={"enum": ["write", "read", "none"]},
        ),
        "RevokeRequest": {
            "oneOf": [
                obj(["jti"], jti={"type": "string", "description": "the token's jti claim"}),
                obj(["token"], token={"type": "string", "description": "the token itself"}),
            ]
        },
        "Revoked": obj(
            ["jti", "revoked", "already", "closed"],
            jti=_STR,
            revoked={"type": "boolean"},
            already={"type": "boolean", "description": "it was revoked before"},
            closed={"type": "integer", "description": "live sockets closed on this server"},
        ),
        "Timeline": obj(
            ["name", "seq", "entries", "next"],
            name=_STR,
            seq=_INT,
            entries={
                "type": "array",
                "items": obj(
                    ["seq", "first_seq"],
                    seq=_INT,
                    first_seq=_INT,
                    start=_TIME,
                    end=_TIME,
                    authors={"type": "array", "items": _STR},
                    updates=_INT,
                    inserted=_INT,
                    deleted=_INT,
                    named={"type": "array", "items": _STR},
                ),
            },
            next=nullable_str,
        ),
        "Version": obj(
            ["seq", "time", "content"], seq=_INT, time=_TIME, content={"type": "object"}
        ),
        "Spans": obj(["root", "spans"], root=_STR, spans={"type": "array", "items": span}),
        "RestoreRequest": obj([], seq=_INT, at=_STR, user=_STR),
        "Restored": obj(
            ["restored", "seq", "changed"], restored=_INT, seq=_INT, changed={"type": "boolean"}
        ),
        "NamedVersion": obj(
            ["id", "name", "seq"], id=_INT, name=_STR, seq=_INT, created=_TIME, author=nullable_str
        ),
    }


def spec(version: str) -> dict[str, Any]:
    """The OpenAPI document of collab ``version``'s HTTP API."""
    statuses = {
        400: "malformed request or parameter",
        401: "missing, invalid, expired or revoked token",
        403: "no access to this document (or read-only, for a change; not admin, to revoke)",
        404: "unknown or deleted document (or version, root, named version)",
        409: "conflicts with what is stored (exists, not deleted, index past the end)",
        413: "too large: the body, or the document it would make (max_document_size)",
        503: "storage is behind; retry later",
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "collab",
            "version": version,
            "description": "Documents, their content and their history. Authenticate "
            "with a token as `Authorization: Bearer ...` or `?token=...` (not needed on "
            'a server without auth). Every error is JSON `{"error": "..."}`.',
        },
        "paths": _document_paths() | _history_paths(),
        "components": {
            "parameters": {
                "room": {
                    "name": "room",
                    "in": "path",
                    "required": True,
                    "description": "document name; may contain /",
                    "schema": _STR,
                }
            },
            "responses": {
                f"E{status}": {
                    "description": text,
                    "content": {_JSON: {"schema": _ref("Error")}},
                }
                for status, text in statuses.items()
            },
            "schemas": _schemas(),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "query": {"type": "apiKey", "in": "query", "name": "token"},
            },
        },
        "security": [{}, {"bearer": []}, {"query": []}],
    }
