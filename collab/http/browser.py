"""The browser editor's HTTP side: its pages, its static assets and the document list.

Owns ``/`` (the document list), ``/d/{room}`` and ``/d/{room}/history`` (one page; the
client routes, because a room name may itself contain ``/``), ``/static/...`` (the
bundle built from ``client/`` into ``collab/static``), ``GET /api/docs`` and
``GET /api/me`` (who the caller is and what they may do with a room, so a read-only
document can look read-only). It never
touches a WebSocket or runs SQL: the list comes from ``Store.list_documents`` and the
people online from the hub's loaded rooms.

Assets are read through a small cache keyed by each file's size and modification time,
so a rebuilt bundle (``npm run dev``) is served without a restart, and gzipped once per
version. Files under ``static/chunks/`` have content hashes in their names and are
cached by browsers for a year; the entry files are referenced as ``app.js?v=<hash>``
by the built ``index.html`` and cached for a year only under the matching hash;
everything else is revalidated with its ETag on every use.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import os
import re
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from collab.auth import Access
from collab.errors import CollabError, StoreUnavailable
from collab.http.state import CONFIG, HUB, VERIFIER, identify
from collab.store import DocumentInfo
from collab.sync.awareness import announced_user
from collab.sync.room import Room, validate_room_name

__all__ = ["STATIC", "setup"]

STATIC = Path(__file__).parent.parent / "static"
"""Where ``npm run build`` (in ``client/``) writes the bundle; shipped in the package."""

_MAX_LIMIT = 200
_DEFAULT_LIMIT = 50
_YEAR = "public, max-age=31536000, immutable"
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".txt": "text/plain; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
}
_COMPRESSIBLE = {".html", ".js", ".css", ".svg", ".txt", ".json", ".map"}
# The pages load only what the bundle ships: no CDN, nothing from another origin. The
# WebSocket's own origin is named too: some browsers do not count ws:// as 'self'.
_CSP = (
    "default-src 'self'; connect-src 'self'{sockets}; img-src 'self' data:; "
    "style-src 'self' 'unsafe-inline'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'self'"
)
# Static paths: the bundle's names are short, and a name a file system refuses (a NUL,
# ENAMETOOLONG) must be a 404, not an exception.
_MAX_PATH = 1024
_MAX_NAME = 255
_UNSERVABLE = re.compile(r"[\x00-\x1f\x7f\\]")
_HOST = re.compile(r"[A-Za-z0-9.\-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")


def setup(app: web.Application, static: Path = STATIC) -> None:
    """Register the browser editor's routes on ``app``, serving the bundle in ``static``."""
    app[_ASSETS] = _Assets(static)
    app.router.add_get("/", _page)
    app.router.add_get("/d/{room:.+}", _page)
    app.router.add_get("/static/{path:.+}", _static)
    app.router.add_get("/api/docs", _list_docs)
    app.router.add_get("/api/me", _me)


@dataclass(frozen=True, slots=True)
class _Asset:
    body: bytes
    gzipped: bytes | None
    content_type: str
    etag: str
    version: str  # the short content hash index.html uses in ?v=


class _Assets:
    """Files under ``root``, read and compressed once per version, off the event loop."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._cache: dict[str, tuple[tuple[int, int], _Asset]] = {}

    async def get(self, path: str) -> _Asset | None:
        """The asset at ``path`` (relative, ``/``-separated), or ``None`` if absent.

        Any path that cannot name a bundle file is absent, never an error: one with a
        NUL or another control character, ``..``, ``.``, an empty or over-long part,
        a backslash, or a trailing slash (the bundle's names are plain).
        """
        if len(path) > _MAX_PATH or _UNSERVABLE.search(path):
            return None
        parts = path.split("/")
        if any(p in ("", ".", "..") or len(p) > _MAX_NAME for p in parts):
            return None
        file = self.root.joinpath(*parts)
        try:
            status = await asyncio.to_thread(os.stat, file)
        except (OSError, ValueError):  # absent, not a directory, too long, a loop...
            return None
        if not stat.S_ISREG(status.st_mode):
            return None
        key = (status.st_mtime_ns, status.st_size)
        cached = self._cache.get(path)
        if cached is not None and cached[0] == key:
            return cached[1]
        try:
            asset = await asyncio.to_thread(_read_asset, file)
        except OSError:  # removed or replaced since the stat (a rebuild in progress)
            return None
        self._cache[path] = (key, asset)
        return asset


def _read_asset(file: Path) -> _Asset:
    body = file.read_bytes()
    digest = hashlib.sha256(body).hexdigest()
    gzipped = None
    if file.suffix in _COMPRESSIBLE and len(body) > 1024:
        gzipped = gzip.compress(body, compresslevel=9, mtime=0)
    return _Asset(
        body,
        gzipped,
        _TYPES.get(file.suffix, "application/octet-stream"),
        f'"{digest[:32]}"',
        digest[:12],
    )


_ASSETS = web.AppKey("assets", _Assets)


def _respond(
    request: web.Request, asset: _Asset, cache_control: str, headers: dict[str, str] | None = None
) -> web.Response:
    common = {"ETag": asset.etag, "Cache-Control": cache_control, "Vary": "Accept-Encoding"}
    common.update(headers or {})
    if asset.etag in _etags(request.headers.get("If-None-Match", "")):
        return web.Response(status=304, headers=common)
    body = asset.body
    if asset.gzipped is not None and "gzip" in request.headers.get("Accept-Encoding", ""):
        body = asset.gzipped
        common["Content-Encoding"] = "gzip"
    return web.Response(body=body, headers={**common, "Content-Type": asset.content_type})


def _etags(header: str) -> set[str]:
    return {tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()}


async def _page(request: web.Request) -> web.Response:
    # Every page is the same index.html; the client reads the path and picks the view.
    asset = await request.app[_ASSETS].get("index.html")
    if asset is None:
        return web.Response(
            status=503,
            text="collab's browser client is not built: run `npm ci && npm run build` in "
            "client/ (see client/README.md).\n",
        )
    host = request.host if _HOST.fullmatch(request.host) else ""
    sockets = f" ws://{host} wss://{host}" if host else ""
    headers = {
        "Content-Security-Policy": _CSP.format(sockets=sockets),
        "Referrer-Policy": "same-origin",
        "X-Content-Type-Options": "nosniff",
    }
    room = request.match_info.get("room")
    if room is not None and not _valid_room(room, request.app[CONFIG].max_room_name):
        # No document can have this name (the WebSocket would refuse it with 4400): say
        # so with the status, but still send the page, whose client explains it.
        headers.update({"Cache-Control": "no-cache", "Content-Type": asset.content_type})
        return web.Response(status=404, body=asset.body, headers=headers)
    return _respond(request, asset, "no-cache", headers)


def _valid_room(path: str, max_length: int) -> bool:
    """Whether the room part of a page's path can name a document (``/history`` is the
    history view of the name before it)."""
    name = path.removesuffix("/history") or path
    try:
        validate_room_name(name, max_length)
    except CollabError:
        return False
    return True


async def _static(request: web.Request) -> web.Response:
    path = request.match_info["path"]
    asset = await request.app[_ASSETS].get(path)
    if asset is None:
        raise web.HTTPNotFound(text="not found\n")
    if path.startswith("chunks/") or request.query.get("v") == asset.version:
        cache_control = _YEAR
    else:
        cache_control = "no-cache"
    return _respond(request, asset, cache_control, {"X-Content-Type-Options": "nosniff"})


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def _list_docs(request: web.Request) -> web.Response:
    """``GET /api/docs?q=&limit=&cursor=``: documents, most recently edited first."""
    query = request.query
    try:
        limit = int(query.get("limit", _DEFAULT_LIMIT))
    except ValueError:
        return _error(400, "limit must be an integer")
    if not 1 <= limit <= _MAX_LIMIT:
        return _error(400, f"limit must be between 1 and {_MAX_LIMIT}")
    before = None
    if "cursor" in query:
        before = _decode_cursor(query["cursor"])
        if before is None:
            return _error(400, "invalid cursor")
    try:
        identity = identify(request)
    except CollabError as exc:
        return _error(401, exc.reason)
    hub = request.app[HUB]
    contains = query.get("q", "").strip()
    docs: list[dict[str, Any]] = []
    last: tuple[int, int] | None = None  # the key of the last document listed
    more = False
    scan = before
    while not more:
        # One more row than needed tells whether the scan can go on. Documents this
        # identity may not see are skipped, so a page may take more than one query.
        try:
            page = await hub.store.list_documents(contains=contains, limit=limit + 1, before=scan)
        except StoreUnavailable as exc:
            return _error(503, exc.reason)
        for info in page:
            scan = (info.updated_ms, info.id)
            if not identity.access(info.name):
                continue
            if len(docs) == limit:
                more = True
                break
            docs.append(_document(info, hub.rooms.get(info.name), identity.access(info.name)))
            last = scan
        if len(page) <= limit:
            break
    next_cursor = _encode_cursor(last) if more and last is not None else None
    return web.json_response(
        {"docs": docs, "next": next_cursor},
        dumps=lambda obj: json.dumps(obj, ensure_ascii=False),
    )


def _document(info: DocumentInfo, room: Room[Any] | None, access: Access) -> dict[str, Any]:
    people: dict[tuple[str, str], dict[str, str]] = {}
    online = 0
    size = info.size
    if room is not None:
        online = len(room.members)
        size = max(size, room.size)
        for entry in room.awareness.values():
            user = announced_user(entry.state)
            if user is not None:
                name, color = user.name[:100], user.color
                people.setdefault((name, color), {"name": name, "color": color[:32]})
    return {
        "name": info.name,
        "created": _iso(info.created_ms),
        "updated": _iso(info.updated_ms),
        "size": size,
        "updates": info.updates,
        "online": online,
        "people": list(people.values()),
        "access": access.name.lower(),
    }


async def _me(request: web.Request) -> web.Response:
    """``GET /api/me?room=``: the caller's identity, and their access to ``room`` if given."""
    try:
        identity = identify(request)
    except CollabError as exc:
        return _error(401, exc.reason)
    body: dict[str, Any] = {
        "auth": request.app[VERIFIER] is not None,
        "user": identity.user_id,
        "name": identity.name,
    }
    room = request.query.get("room")
    if room is not None:
        body["access"] = identity.access(room).name.lower()
    return web.json_response(body, dumps=lambda obj: json.dumps(obj, ensure_ascii=False))


def _iso(ms: int) -> str:
    # The history API's format: ISO 8601, UTC, milliseconds, "Z".
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _encode_cursor(before: tuple[int, int]) -> str:
    return f"{before[0]}.{before[1]}"


def _decode_cursor(cursor: str) -> tuple[int, int] | None:
    at, _, doc_id = cursor.partition(".")
    try:
        return int(at), int(doc_id)
    except ValueError:
        return None
