"""The history HTTP API: ``/api/docs/{room}/...`` (timeline, versions, diff, blame,
restore, named versions, playback).

Owns parsing requests and shaping responses; ``history.service.History`` does the work.
Handlers raise; ``errors.py`` answers. Reads need read access to the document, restore and
labelling need write access (the same rules as the WebSocket, ``auth.py``).

A room name may contain ``/``: the routes end in fixed words (``/history``,
``/versions/{seq}``...), and the name is everything before them. No path matches two
routes: a ``{seq}`` is never one of those words, so ``/api/docs/a/versions/content`` is
the content of the document ``a/versions``.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from aiohttp import web

from collab.auth import Access
from collab.clock import format_ms
from collab.errors import BadRequest, NotFound
from collab.history.markup import html_of
from collab.history.service import History
from collab.http.body import MAX_JSON, load_models, read
from collab.http.errors import json_response
from collab.http.openapi import READ, WRITE, Route
from collab.http.rich import RICH_FORMATS, rich_response
from collab.http.state import HUB, author, authorize, identify
from collab.store import DocumentHead, DocumentStore
from collab.store.documents import Lineage

__all__ = ["ROUTES"]

log = logging.getLogger(__name__)

_DEFAULT_LIMIT, _MAX_LIMIT = 20, 200
_DEFAULT_GAP = 300.0  # seconds between two updates that still belong to one entry
_MAX_PLAYBACK = 5000
_MAX_SAMPLES = 200

_WORDS = "content|history|versions|diff|blame|named-versions|playback|samples|info|lineage"
_DOC = "/api/docs/{room:.+}"
_SEQ = "{seq:(?!(?:" + _WORDS + ")$)[^/]+}"


async def _open(request: web.Request, need: Access) -> tuple[History, DocumentHead]:
    """Check the room name and access, and find the document.

    Raises:
        CollabError: a bad name, no access, no such document (``errors.py`` answers).
    """
    name = request.match_info["room"]
    authorize(request, name, need)
    hub = request.app[HUB]
    history = History(hub.store, hub.rooms.__contains__)
    lineage = request.query.get("lineage")
    if lineage is None:
        return history, await history.head(name)
    if need is not Access.READ:
        raise BadRequest("?lineage= reads a history; changes go to the current one")
    return history, await history.head_of(name, lineage)


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


# -- handlers ---------------------------------------------------------------------------


async def _history(request: web.Request) -> web.StreamResponse:
    history, head = await _open(request, Access.READ)
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
    page = await history.timeline(
        head, before=before, limit=limit, gap_ms=int(gap * 1000), raw=raw
    )
    return json_response(
        {"name": head.name, "lineage": head.lineage, "seq": head.last_seq, **page}
    )


async def _version(request: web.Request) -> web.StreamResponse:
    history, head = await _open(request, Access.READ)
    seq = await history.resolve(head, request.match_info.get("seq"), request.query.get("at"))
    fmt = request.query.get("format", "json")
    if fmt == "json":
        return json_response(await history.version_json(head, seq))
    if fmt == "yjs":
        version = await history.version(head, seq)
        return web.Response(
            body=version.state,
            content_type="application/octet-stream",
            headers={
                "X-Collab-Seq": str(version.seq),
                "X-Collab-Time": format_ms(version.created_ms),
            },
        )
    if fmt == "text":
        text = await history.version_text(head, seq, request.query.get("root"))
        return web.Response(text=text, content_type="text/plain", charset="utf-8")
    if fmt in RICH_FORMATS:
        found, document = await history.version_rich(head, seq, request.query.get("root"), fmt)
        return rich_response(document, found.seq, found.created_ms)
    raise BadRequest(f"bad format {fmt!r}: expected json, yjs, text, prosemirror or html")


async def _diff(request: web.Request) -> web.StreamResponse:
    history, head = await _open(request, Access.READ)
    query = request.query
    if "from" not in query and "from_at" not in query:
        raise BadRequest("give the older version as from=SEQ or from_at=TIME")
    old = await history.resolve(head, query.get("from"), query.get("from_at"))
    new = await history.resolve(head, query.get("to"), query.get("to_at"))
    return await _changes(request, await history.diff(head, old, new, query.get("root")))


async def _blame(request: web.Request) -> web.StreamResponse:
    history, head = await _open(request, Access.READ)
    seq = await history.resolve(head, request.query.get("seq"), request.query.get("at"))
    return await _changes(request, await history.blame(head, seq, request.query.get("root")))


async def _changes(request: web.Request, found: dict[str, Any]) -> web.StreamResponse:
    """A diff or blame as JSON, or (``format=html``, rich text only) its document as HTML,
    rendered in a worker thread: a long document's HTML would hold up every room."""
    fmt = request.query.get("format", "json")
    if fmt == "json":
        return json_response(found)
    if fmt != "html":
        raise BadRequest(f"bad format {fmt!r}: expected json or html")
    if "doc" not in found:
        raise BadRequest(f"format=html reads rich-text roots; {found['root']!r} is text")
    html = await asyncio.to_thread(html_of, found["doc"])
    return web.Response(text=html, content_type="text/html", charset="utf-8")


async def _restore(request: web.Request) -> web.StreamResponse:
    await load_models()  # pydantic, imported off the loop once
    from collab.http.models import RestoreVersion, parse

    history, head = await _open(request, Access.WRITE)
    identity = identify(request)
    data = parse(RestoreVersion, await read(request, MAX_JSON))
    if data.seq is None and data.at is None:
        raise BadRequest('give the version to restore: {"seq": N} or {"at": TIME}')
    source = head if data.lineage is None else await history.head_of(head.name, data.lineage)
    target = await history.resolve(source, data.seq, data.at)
    hub = request.app[HUB]
    room = hub.rooms.get(head.name)
    current = room.doc.get_update() if room is not None else None
    restored, update = await history.restore(source, target, current, head)
    by = author(request, identity, data.user)
    before = hub.rooms[head.name].seq if head.name in hub.rooms else head.last_seq
    new_seq = before
    if update:
        new_seq = await hub.apply(head.name, update, by, f"api-{uuid.uuid4().hex[:12]}")
    log.info("restore room=%r to seq=%d by %r: seq %d", head.name, restored, by, new_seq)
    return json_response({"restored": restored, "seq": new_seq, "changed": new_seq != before})


async def _named_list(request: web.Request) -> web.StreamResponse:
    history, head = await _open(request, Access.READ)
    return json_response({"named_versions": await history.named_versions(head)})


async def _named_add(request: web.Request) -> web.StreamResponse:
    await load_models()  # pydantic, imported off the loop once
    from collab.http.models import NameVersion, parse

    history, head = await _open(request, Access.WRITE)
    identity = identify(request)
    data = parse(NameVersion, await read(request, MAX_JSON))
    seq = await history.resolve(head, data.seq, data.at)
    by = author(request, identity, data.user)
    return json_response(await history.add_named_version(head, seq, data.name, by), 201)


async def _named_delete(request: web.Request) -> web.StreamResponse:
    history, head = await _open(request, Access.WRITE)
    raw = request.match_info["id"]
    if not raw.isdigit():
        raise BadRequest(f"bad named version id {raw!r}")
    await history.delete_named_version(head, int(raw))
    return web.Response(status=204)


async def _playback(request: web.Request) -> web.StreamResponse:
    history, head = await _open(request, Access.READ)
    old = await history.resolve(head, request.query.get("from", "0"), None)
    new = await history.resolve(head, request.query.get("to"), None)
    limit = _int(request, "limit", 1000, 1, _MAX_PLAYBACK)
    base = _flag(request, "base", True)
    return json_response(await history.playback(head, old, new, limit, base))


async def _samples(request: web.Request) -> web.StreamResponse:
    history, head = await _open(request, Access.READ)
    old = await history.resolve(head, request.query.get("from", "0"), None)
    new = await history.resolve(head, request.query.get("to"), None)
    count = _int(request, "count", 20, 1, _MAX_SAMPLES)
    root = request.query.get("root")
    return json_response(await history.samples(head, old, new, count, root))


async def _info(request: web.Request) -> web.StreamResponse:
    history, head = await _open(request, Access.READ)
    info = await history.info(head)
    lineage = await DocumentStore(request.app[HUB].store).lineage(head.name)
    return json_response(info | _lineage_json(lineage))


async def _lineage(request: web.Request) -> web.StreamResponse:
    """Which history the document has (cheap: one read, no rebuild): what an editor that
    keeps an offline copy checks before uploading it (docs/lineage.md)."""
    name = request.match_info["room"]
    authorize(request, name, Access.READ)
    lineage = await DocumentStore(request.app[HUB].store).lineage(name)
    if lineage is None:
        raise NotFound(f"no document {name!r}")
    return json_response({"name": name} | _lineage_json(lineage))


def _lineage_json(lineage: Lineage | None) -> dict[str, Any]:
    # Which history this is: a client holding another one of this name is refused with
    # 4410 rather than merged.
    if lineage is None:
        return {"lineage": None, "retired_lineages": []}
    return {
        "lineage": lineage.current,
        "retired_lineages": [
            {
                "lineage": r.lineage,
                "retired": format_ms(r.retired_ms),
                "reason": r.reason,
                "readable": r.readable,  # its history is kept: read it with ?lineage=
            }
            for r in lineage.retired
        ],
    }


_TAG = "history"
_FORMATS = ["json", "yjs", "text", "prosemirror", "html"]
_LINEAGE = ("lineage", "read a history the document retired in a reset (see /lineage)")
_VERSION_QUERY = (
    _LINEAGE,
    ("format", "json (default), yjs, text, prosemirror or html", {"enum": _FORMATS}),
    ("root", "for text, prosemirror, html: the root (default the main root)"),
)
ROUTES = (
    Route(
        "GET", _DOC + "/history", _history, "The timeline, newest first", _TAG,
        (200, "a page of the timeline"), READ,
        (
            ("limit", "entries, 1-200 (default 20)", {"type": "integer"}),
            ("cursor", "the previous page's next"),
            ("gap", "seconds that end an entry (default 300)", {"type": "number"}),
            ("raw", "1: one entry per stored update"),
            _LINEAGE,
        ),
    ),
    Route(
        "GET", _DOC + "/versions", _version,
        "The version at a time (?at=), else the newest", _TAG, (200, "the version"), READ,
        (("at", "ISO-8601 time or epoch milliseconds"), *_VERSION_QUERY),
    ),
    Route(
        "GET", _DOC + "/versions/" + _SEQ, _version,
        "Version seq: the document right after update seq", _TAG, (200, "the version"),
        READ, _VERSION_QUERY,
    ),
    Route(
        "GET", _DOC + "/diff", _diff,
        "What changed in a text root between two versions, and who changed it", _TAG,
        (200, "spans"), READ,
        (
            ("from", "the older version's seq"),
            ("from_at", "... or its time"),
            ("to", "the newer version's seq (default the newest)"),
            ("to_at", "... or its time"),
            ("root", "the root (default the main root)"),
            ("format", "json (default), or html for a rich-text root", {"enum": ["json", "html"]}),
            _LINEAGE,
        ),
    ),
    Route(
        "GET", _DOC + "/blame", _blame, "Who wrote each span of a text root in a version",
        _TAG, (200, "spans"), READ,
        (
            ("seq", "version"),
            ("at", "time"),
            ("root", "the root (default the main root)"),
            ("format", "json (default), or html for a rich-text root", {"enum": ["json", "html"]}),
            _LINEAGE,
        ),
    ),
    Route(
        "POST", _DOC + "/restore", _restore,
        "Make a past version's content current, as one new change relayed live", _TAG,
        (200, "restored"), WRITE, body="RestoreVersion",
    ),
    Route(
        "GET", _DOC + "/named-versions", _named_list, "Named versions, newest version first",
        _TAG, (200, "named versions"), query=(_LINEAGE,),
    ),
    Route(
        "POST", _DOC + "/named-versions", _named_add, "Name a version", _TAG,
        (201, "the new named version"), WRITE, body="NameVersion",
    ),
    Route(
        "DELETE", _DOC + "/named-versions/{id}", _named_delete, "Remove a named version",
        _TAG, (204, "removed"),
    ),
    Route(
        "GET", _DOC + "/playback", _playback,
        "A base version and the updates after it, for a history slider", _TAG,
        (200, "playback"), READ,
        (
            ("from", "base version (default 0)"),
            ("to", "last version (default the newest)"),
            ("limit", "updates, 1-5000 (default 1000)", {"type": "integer"}),
            ("base", "0: leave the base out"),
            _LINEAGE,
        ),
    ),
    Route(
        "GET", _DOC + "/samples", _samples, "Versions spread evenly between two versions",
        _TAG, (200, "samples"), READ,
        (
            ("from", "first version"),
            ("to", "last version"),
            ("count", "1-200 (default 20)", {"type": "integer"}),
            ("root", "root whose value is returned (default the main root)"),
            _LINEAGE,
        ),
    ),
    Route(
        "GET", _DOC + "/info", _info,
        "The document's newest version and what its history costs", _TAG, (200, "info"),
        query=(_LINEAGE,),
    ),
    Route(
        "GET", _DOC + "/lineage", _lineage,
        "Which history the document has, and which it retired (one read)", _TAG,
        (200, "the lineage"), READ,
    ),
)  # fmt: skip
