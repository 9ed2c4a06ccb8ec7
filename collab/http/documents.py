"""The REST API for documents, token revocation, and the OpenAPI document.

Owns parsing these requests and shaping their responses:

- ``POST /api/docs`` creates a document (optionally with text); ``DELETE
  /api/docs/{room}`` deletes it softly (hidden, its room closed with 4404, restorable for
  ``deleted_retention``); ``POST /api/docs/{room}/undelete`` brings it back;
- ``GET /api/docs/{room}/content`` reads the newest version (text, JSON or a Yjs update);
  ``PUT`` replaces the ``content`` text, ``PATCH`` inserts and deletes in it. Both are
  computed here (``edit.py``, in a worker thread) and applied through ``Hub.apply``: relayed
  live to the room, stored with the caller as author, like any client's edit;
- ``POST /api/tokens/revoke`` revokes a token at once (admin tokens only);
- ``GET /api/openapi.json`` describes every ``/api`` route (``openapi.py``).

Permissions are the WebSocket's (``auth.py``): reading needs read access to the
document, every change needs write access. Errors are JSON ``{"error": "..."}``: 400
malformed request, 401 no or bad token, 403 no access, 404 unknown or deleted document,
409 conflict, 413 too large, 503 storage behind. It runs no SQL (``collab.store``) and no Yjs
logic (``edit.py``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from aiohttp import web

from collab import __version__
from collab.auth import Access, Identity, token_id_of
from collab.errors import (
    BadRoomName,
    CollabError,
    DocumentDeleted,
    DocumentTooLarge,
    Forbidden,
    Overloaded,
    StoreUnavailable,
)
from collab.history.edit import parse_operations, patch_update, replace_update, text_update
from collab.history.replay import (
    TEXT_ROOT,
    BadRequest,
    Conflict,
    HistoryError,
    NotFound,
    format_ms,
)
from collab.history.service import Archive
from collab.http.openapi import spec
from collab.http.state import CONFIG, HUB, close_revoked, identify
from collab.store import DocumentState, DocumentStore, TokenStore, now_ms
from collab.sync.room import validate_room_name

__all__ = ["setup"]

log = logging.getLogger(__name__)

_MAX_JSON = 64 * 1024  # bodies other than content
_MAX_JTI = 255

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def setup(app: web.Application) -> None:
    """Register the document, token and OpenAPI routes on ``app`` (after the history
    API's, whose fixed-suffix routes must match first)."""
    room = "/api/docs/{room:.+}"
    app.router.add_post("/api/docs", _create)
    app.router.add_get(room + "/content", _content)
    app.router.add_put(room + "/content", _replace)
    app.router.add_patch(room + "/content", _patch)
    app.router.add_post(room + "/undelete", _undelete)
    app.router.add_delete(room, _delete)
    app.router.add_post("/api/tokens/revoke", _revoke)
    app.router.add_get("/api/openapi.json", _openapi)


# -- plumbing ---------------------------------------------------------------------------


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(
        data,
        status=status,
        headers=headers,
        dumps=lambda obj: json.dumps(obj, ensure_ascii=False),
    )


def _status(exc: CollabError) -> int:
    if isinstance(exc, BadRoomName):
        return 400
    if isinstance(exc, Forbidden):
        return 403
    if isinstance(exc, DocumentDeleted):
        return 404
    if isinstance(exc, DocumentTooLarge):
        return 413
    if isinstance(exc, Overloaded | StoreUnavailable):
        return 503
    return 401


def _answer(handler: Handler) -> Handler:
    """Turn the errors a handler raises into JSON error responses."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except HistoryError as exc:
            return _json({"error": exc.message}, exc.status)
        except CollabError as exc:
            return _json({"error": exc.reason}, _status(exc))
        except web.HTTPRequestEntityTooLarge:
            return _json({"error": "request body too large"}, 413)

    return wrapped


def _allow(request: web.Request, name: str, need: Access) -> Identity:
    """Check the room name and the caller's access to it.

    Raises:
        CollabError: bad name (400), no or bad token (401), not enough access (403).
    """
    validate_room_name(name, request.app[CONFIG].max_room_name)
    identity = identify(request)
    access = identity.access(name)
    if access is Access.NONE or access < need:
        raise Forbidden("no access to this document" if access is Access.NONE else "read-only")
    return identity


async def _live(request: web.Request, name: str) -> DocumentState:
    """The document ``name``, which must exist and not be deleted.

    Raises:
        NotFound: unknown, or deleted (404 either way; the message says which).
    """
    found = await DocumentStore(request.app[HUB].store).find(name)
    if found is None:
        raise NotFound(f"no document named {name!r}")
    if found.deleted_ms is not None:
        raise NotFound(f"document {name!r} is deleted (POST .../undelete restores it)")
    return found


def _author(request: web.Request, identity: Identity, data: dict[str, Any]) -> str | None:
    # The verified identity when auth is on; on an open server, the name the caller gives
    # (like the WebSocket's ?user=).
    return identity.author_of(data.get("user"), request.query.get("user"))


async def _read(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise DocumentTooLarge(f"request body larger than {limit} bytes")
    return await request.read()


async def _object(request: web.Request) -> dict[str, Any]:
    data = _parse(await _read(request, _MAX_JSON))
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object")
    return data


def _parse(body: bytes) -> Any:
    try:
        return json.loads(body or b"{}")
    except ValueError:
        raise BadRequest("the body is not JSON") from None


def _text(data: dict[str, Any], key: str, required: bool) -> str | None:
    value = data.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise BadRequest(f'give "{key}" as a string')
    return value


async def _state(request: web.Request, name: str) -> bytes:
    """The document as it is now: the live room's if loaded here, else the newest stored
    version."""
    hub = request.app[HUB]
    room = hub.rooms.get(name)
    if room is not None:
        return room.doc.get_update()
    archive = Archive(hub.store, hub.rooms.__contains__)
    head = await archive.head(name)
    return (await archive.version(head, head.last_seq)).state


async def _apply(request: web.Request, name: str, update: bytes, author: str | None) -> int:
    hub = request.app[HUB]
    return await hub.apply(name, update, author, f"api-{uuid.uuid4().hex[:12]}")


# -- documents --------------------------------------------------------------------------


@_answer
async def _create(request: web.Request) -> web.StreamResponse:
    identify(request)  # 401 before reading a body that may be large
    limit = request.app[CONFIG].max_document_size
    data = _parse(await _read(request, limit + _MAX_JSON))
    if not isinstance(data, dict):
        raise BadRequest('give {"name": "...", "content": "..."}')
    name = _text(data, "name", required=True)
    assert name is not None
    identity = _allow(request, name, Access.WRITE)
    content = _text(data, "content", required=False)
    if content is not None and len(content.encode()) > limit:
        raise DocumentTooLarge(f"content larger than max_document_size ({limit} bytes)")
    hub = request.app[HUB]
    documents = DocumentStore(hub.store)
    created = await documents.create(name)
    if created is None:
        found = await documents.find(name)
        if found is not None and found.deleted_ms is not None:
            raise Conflict(f"a deleted document is named {name!r}: undelete it, or wait")
        raise Conflict(f"document {name!r} exists")
    seq = 0
    author = _author(request, identity, data)
    if content:
        seq = await _apply(request, name, text_update(content, TEXT_ROOT), author)
    log.info("created document %r by %r", name, author)
    location = "/api/docs/" + quote(name, safe="/") + "/content"
    return _json(
        {"name": name, "created": format_ms(created.created_ms), "seq": seq},
        201,
        {"Location": location},
    )


@_answer
async def _delete(request: web.Request) -> web.StreamResponse:
    name = request.match_info["room"]
    identity = _allow(request, name, Access.WRITE)
    hub = request.app[HUB]
    await _live(request, name)
    at = now_ms()
    if not await DocumentStore(hub.store).delete(name, at):
        raise NotFound(f"no document named {name!r}")  # deleted meanwhile
    await hub.evict(name)
    retention = int(request.app[CONFIG].deleted_retention * 1000)
    log.info("deleted document %r by %r", name, identity.author)
    return _json(
        {"name": name, "deleted": format_ms(at), "restorable_until": format_ms(at + retention)}
    )


@_answer
async def _undelete(request: web.Request) -> web.StreamResponse:
    name = request.match_info["room"]
    identity = _allow(request, name, Access.WRITE)
    hub = request.app[HUB]
    documents = DocumentStore(hub.store)
    if not await documents.undelete(name):
        if await documents.find(name) is None:
            raise NotFound(f"no document named {name!r}")
        raise Conflict(f"document {name!r} is not deleted")
    hub.readmit(name)
    head = await Archive(hub.store, hub.rooms.__contains__).head(name)
    log.info("undeleted document %r by %r", name, identity.author)
    return _json({"name": name, "created": format_ms(head.created_ms), "seq": head.last_seq})


# -- content ----------------------------------------------------------------------------


@_answer
async def _content(request: web.Request) -> web.StreamResponse:
    name = request.match_info["room"]
    _allow(request, name, Access.READ)
    await _live(request, name)
    hub = request.app[HUB]
    archive = Archive(hub.store, hub.rooms.__contains__)
    head = await archive.head(name)
    fmt = request.query.get("format", "text")
    if fmt == "text":
        text = await archive.version_text(
            head, head.last_seq, request.query.get("root", TEXT_ROOT)
        )
        return web.Response(
            text=text, content_type="text/plain", charset="utf-8", headers=_seq(head.last_seq)
        )
    if fmt == "json":
        version = await archive.version_json(head, head.last_seq)
        return _json({"name": name, **version})
    if fmt == "yjs":
        state = (await archive.version(head, head.last_seq)).state
        return web.Response(
            body=state, content_type="application/octet-stream", headers=_seq(head.last_seq)
        )
    raise BadRequest(f"bad format {fmt!r}: expected text, json or yjs")


def _seq(seq: int) -> dict[str, str]:
    return {"X-Collab-Seq": str(seq)}


@_answer
async def _replace(request: web.Request) -> web.StreamResponse:
    name = request.match_info["room"]
    identity = _allow(request, name, Access.WRITE)
    limit = request.app[CONFIG].max_document_size
    body = await _read(request, limit)
    data: dict[str, Any] = {}
    if request.content_type == "application/json":
        parsed = _parse(body)
        if not isinstance(parsed, dict):
            raise BadRequest('give {"text": "..."} or a text/plain body')
        data = parsed
        text = _text(data, "text", required=True)
        assert text is not None
    else:
        try:
            text = body.decode()
        except UnicodeDecodeError:
            raise BadRequest("the body is not UTF-8 text") from None
    if len(text.encode()) > limit:
        raise DocumentTooLarge(f"content larger than max_document_size ({limit} bytes)")
    await _live(request, name)
    state = await _state(request, name)
    update = await asyncio.to_thread(replace_update, state, TEXT_ROOT, text)
    return await _changed(request, name, update, _author(request, identity, data))


@_answer
async def _patch(request: web.Request) -> web.StreamResponse:
    name = request.match_info["room"]
    identity = _allow(request, name, Access.WRITE)
    body = await _read(request, request.app[CONFIG].max_document_size)
    data = _parse(body)
    operations = parse_operations(data)
    await _live(request, name)
    state = await _state(request, name)
    update = await asyncio.to_thread(patch_update, state, TEXT_ROOT, operations)
    extra = data if isinstance(data, dict) else {}
    return await _changed(request, name, update, _author(request, identity, extra))


async def _changed(
    request: web.Request, name: str, update: bytes, author: str | None
) -> web.StreamResponse:
    if update:
        seq = await _apply(request, name, update, author)
        log.info("content of %r changed by %r: seq %d", name, author, seq)
    else:  # the text is already what was asked for
        hub = request.app[HUB]
        room = hub.rooms.get(name)
        if room is not None:
            seq = room.seq
        else:
            seq = (await Archive(hub.store, hub.rooms.__contains__).head(name)).last_seq
    return _json({"name": name, "seq": seq, "changed": bool(update)})


# -- tokens -----------------------------------------------------------------------------


@_answer
async def _revoke(request: web.Request) -> web.StreamResponse:
    identity = identify(request)
    if not identity.admin:
        raise Forbidden("only an admin token may revoke tokens")
    data = await _object(request)
    jti = _text(data, "jti", required=False)
    token = _text(data, "token", required=False)
    expires_ms = None
    if (jti is None) == (token is None):
        raise BadRequest('give the token\'s id, {"jti": "..."}, or the token, {"token": "..."}')
    if token is not None:
        try:
            jti, expires = token_id_of(token)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        expires_ms = None if expires is None else int(expires * 1000)
    assert jti is not None
    if not 0 < len(jti) <= _MAX_JTI:
        raise BadRequest(f"bad jti: 1 to {_MAX_JTI} characters")
    hub = request.app[HUB]
    fresh = await TokenStore(hub.store).revoke(jti, expires_ms)
    hub.revoked.add(jti)
    closed = close_revoked(request.app)
    log.info("revoked token %r by %r: %d connections closed", jti, identity.author, closed)
    return _json({"jti": jti, "revoked": True, "already": not fresh, "closed": closed})


# -- OpenAPI ----------------------------------------------------------------------------


async def _openapi(request: web.Request) -> web.Response:
    return _json(spec(__version__))
