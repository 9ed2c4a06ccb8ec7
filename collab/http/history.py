"""The history HTTP API: ``/api/docs/{room}/...`` (timeline, versions, diff, blame,
restore, named versions, playback).

Owns parsing requests and shaping responses; ``archive.py`` does the work. Every error is
JSON ``{"error": "..."}`` with its status: 400 malformed parameter, 401 no or bad token,
403 no access, 404 unknown (or deleted) document or version, 409 duplicate name, 503
storage behind.
Reads need read access to the document, restore and labelling need write access (the
same rules as the WebSocket, ``auth.py``).

A room name may contain ``/``: the routes end in fixed words (``/history``,
``/versions/{seq}``...), and the name is everything before them.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from collab.auth import Access
from collab.errors import (
    BadRoomName,
    CollabError,
    DocumentDeleted,
    DocumentTooLarge,
    Forbidden,
    Overloaded,
    StoreUnavailable,
)
from collab.history.replay import TEXT_ROOT, BadRequest, HistoryError, format_ms
from collab.history.service import Archive
from collab.http.state import CONFIG, HUB, identify
from collab.store import DocumentHead
from collab.sync.room import validate_room_name

__all__ = ["setup"]

log = logging.getLogger(__name__)

_DEFAULT_LIMIT, _MAX_LIMIT = 20, 200
_DEFAULT_GAP = 300.0  # seconds between two updates that still belong to one entry
_MAX_PLAYBACK = 5000
_MAX_SAMPLES = 200
_MAX_BODY = 64 * 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def setup(app: web.Application) -> None:
    """Register the history API's routes on ``app``."""
    room = "/api/docs/{room:.+}"
    app.router.add_get(room + "/history", _history)
    app.router.add_get(room + "/versions/{seq}", _version)
    app.router.add_get(room + "/versions", _version)
    app.router.add_get(room + "/diff", _diff)
    app.router.add_get(room + "/blame", _blame)
    app.router.add_post(room + "/restore", _restore)
    app.router.add_get(room + "/named-versions", _named_list)
    app.router.add_post(room + "/named-versions", _named_add)
    app.router.add_delete(room + "/named-versions/{id}", _named_delete)
    app.router.add_get(room + "/playback", _playback)
    app.router.add_get(room + "/samples", _samples)
    app.router.add_get(room + "/info", _info)


# -- plumbing ---------------------------------------------------------------------------


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(
        data, status=status, dumps=lambda obj: json.dumps(obj, ensure_ascii=False)
    )


def _error(status: int, message: str) -> web.Response:
    return _json({"error": message}, status)


async def _open(request: web.Request, need: Access) -> tuple[Archive, DocumentHead]:
    """Check the room name and access, and find the document.

    Raises:
        CollabError, HistoryError: turned into JSON errors by ``_answer``.
    """
    name = request.match_info["room"]
    validate_room_name(name, request.app[CONFIG].max_room_name)
    identity = identify(request)
    access = identity.access(name)
    if access is Access.NONE or access < need:
        raise Forbidden("no access to this document" if access is Access.NONE else "read-only")
    hub = request.app[HUB]
    archive = Archive(hub.store, hub.rooms.__contains__)
    return archive, await archive.head(name)


def _answer(handler: Handler) -> Handler:
    """Turn the errors a handler raises into JSON error responses."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except HistoryError as exc:
            return _error(exc.status, exc.message)
        except (Overloaded, StoreUnavailable, DocumentTooLarge) as exc:
            return _error(413 if isinstance(exc, DocumentTooLarge) else 503, exc.reason)
        except DocumentDeleted as exc:  # deleted while a restore was on its way
            return _error(404, exc.reason)
        except CollabError as exc:
            status = 403 if isinstance(exc, Forbidden) else 401
            if isinstance(exc, BadRoomName):
                status = 400
            return _error(status, exc.reason)

    return wrapped


def _int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"bad {name} {raw!r}: expected a whole number") from None
    if not low <= value <= high:
        raise BadRequest(f"bad {name} {value}: expected {low} to {high}")
    return value


def _flag(request: web.Request, name: str, default: bool) -> bool:
    raw = request.query.get(name)
    if raw is None:
        return default
    if raw.lower() in ("1", "true", "yes", ""):
        return True
    if raw.lower() in ("0", "false", "no"):
        return False
    raise BadRequest(f"bad {name} {raw!r}: expected 1 or 0")


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    if (request.content_length or 0) > _MAX_BODY:
        raise BadRequest("request body too large")
    try:
        data = json.loads(await request.text() or "{}")
    except ValueError:
        raise BadRequest("the body is not JSON") from None
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object")
    return data


def _opt_str(data: dict[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise BadRequest(f"bad {name}: expected a string or number")
    return str(value)


# -- handlers ---------------------------------------------------------------------------


@_answer
async def _history(request: web.Request) -> web.StreamResponse:
    archive, head = await _open(request, Access.READ)
    limit = _int(request, "limit", _DEFAULT_LIMIT, 1, _MAX_LIMIT)
    cursor = request.query.get("cursor")
    before = None
    if cursor:
        try:
            before = int(cursor)
        except ValueError:
            raise BadRequest(f"bad cursor {cursor!r}") from None
    try:
        gap = float(request.query.get("gap", _DEFAULT_GAP))
    except ValueError:
        raise BadRequest("bad gap: expected seconds") from None
    if not 0 <= gap <= 10**7:
        raise BadRequest("bad gap: expected 0 to 10000000 seconds")
    raw = _flag(request, "raw", False)
    page = await archive.timeline(
        head, before=before, limit=limit, gap_ms=int(gap * 1000), raw=raw
    )
    return _json({"name": head.name, "seq": head.last_seq, **page})


@_answer
async def _version(request: web.Request) -> web.StreamResponse:
    archive, head = await _open(request, Access.READ)
    seq = await archive.resolve(head, request.match_info.get("seq"), request.query.get("at"))
    fmt = request.query.get("format", "json")
    if fmt == "json":
        return _json(await archive.version_json(head, seq))
    if fmt == "yjs":
        version = await archive.version(head, seq)
        return web.Response(
            body=version.state,
            content_type="application/octet-stream",
            headers={
                "X-Collab-Seq": str(version.seq),
                "X-Collab-Time": format_ms(version.created_ms),
            },
        )
    if fmt == "text":
        root = request.query.get("root", TEXT_ROOT)
        text = await archive.version_text(head, seq, root)
        return web.Response(text=text, content_type="text/plain", charset="utf-8")
    raise BadRequest(f"bad format {fmt!r}: expected json, yjs or text")


@_answer
async def _diff(request: web.Request) -> web.StreamResponse:
    archive, head = await _open(request, Access.READ)
    query = request.query
    if "from" not in query and "from_at" not in query:
        raise BadRequest("give the older version as from=SEQ or from_at=TIME")
    old = await archive.resolve(head, query.get("from"), query.get("from_at"))
    new = await archive.resolve(head, query.get("to"), query.get("to_at"))
    return _json(await archive.diff(head, old, new, query.get("root", TEXT_ROOT)))


@_answer
async def _blame(request: web.Request) -> web.StreamResponse:
    archive, head = await _open(request, Access.READ)
    seq = await archive.resolve(head, request.query.get("seq"), request.query.get("at"))
    return _json(await archive.blame(head, seq, request.query.get("root", TEXT_ROOT)))


@_answer
async def _restore(request: web.Request) -> web.StreamResponse:
    archive, head = await _open(request, Access.WRITE)
    data = await _body(request)
    seq, at = _opt_str(data, "seq"), _opt_str(data, "at")
    if seq is None and at is None:
        raise BadRequest('give the version to restore: {"seq": N} or {"at": TIME}')
    target = await archive.resolve(head, seq, at)
    hub = request.app[HUB]
    room = hub.rooms.get(head.name)
    current = room.doc.get_update() if room is not None else None
    restored, update = await archive.restore(head, target, current)
    author = identify(request).author_of(_opt_str(data, "user"), request.query.get("user"))
    before = hub.rooms[head.name].seq if head.name in hub.rooms else head.last_seq
    new_seq = before
    if update:
        new_seq = await hub.apply(head.name, update, author, f"api-{uuid.uuid4().hex[:12]}")
    log.info("restore room=%r to seq=%d by %r: seq %d", head.name, restored, author, new_seq)
    return _json({"restored": restored, "seq": new_seq, "changed": new_seq != before})


@_answer
async def _named_list(request: web.Request) -> web.StreamResponse:
    archive, head = await _open(request, Access.READ)
    return _json({"named_versions": await archive.named_versions(head)})


@_answer
async def _named_add(request: web.Request) -> web.StreamResponse:
    archive, head = await _open(request, Access.WRITE)
    data = await _body(request)
    name = data.get("name")
    if not isinstance(name, str):
        raise BadRequest('give the version a name: {"name": "...", "seq": N}')
    seq = await archive.resolve(head, _opt_str(data, "seq"), _opt_str(data, "at"))
    author = identify(request).author_of(_opt_str(data, "user"))
    return _json(await archive.add_named_version(head, seq, name, author), 201)


@_answer
async def _named_delete(request: web.Request) -> web.StreamResponse:
    archive, head = await _open(request, Access.WRITE)
    raw = request.match_info["id"]
    if not raw.isdigit():
        raise BadRequest(f"bad named version id {raw!r}")
    await archive.delete_named_version(head, int(raw))
    return web.Response(status=204)


@_answer
async def _playback(request: web.Request) -> web.StreamResponse:
    archive, head = await _open(request, Access.READ)
    old = await archive.resolve(head, request.query.get("from", "0"), None)
    new = await archive.resolve(head, request.query.get("to"), None)
    limit = _int(request, "limit", 1000, 1, _MAX_PLAYBACK)
    base = _flag(request, "base", True)
    return _json(await archive.playback(head, old, new, limit, base))


@_answer
async def _samples(request: web.Request) -> web.StreamResponse:
    archive, head = await _open(request, Access.READ)
    old = await archive.resolve(head, request.query.get("from", "0"), None)
    new = await archive.resolve(head, request.query.get("to"), None)
    count = _int(request, "count", 20, 1, _MAX_SAMPLES)
    root = request.query.get("root", TEXT_ROOT)
    return _json(await archive.samples(head, old, new, count, root))


@_answer
async def _info(request: web.Request) -> web.StreamResponse:
    archive, head = await _open(request, Access.READ)
    return _json(await archive.info(head))
