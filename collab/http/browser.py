"""The browser editor's HTTP side: its pages and its static assets.

Owns ``/`` (the document list), ``/d/{room}`` and ``/d/{room}/history`` (one page; the
client routes, because a room name may itself contain ``/``) and ``/static/...`` (the
bundle built from ``client/`` into ``collab/static``). The pages read the JSON API
(``documents.py``, ``tokens.py``); this module never touches a WebSocket or runs SQL.

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
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from collab.errors import CollabError
from collab.http.state import CONFIG
from collab.sync.name import has_control_characters
from collab.sync.room import validate_room_name

__all__ = ["STATIC", "setup"]

STATIC = Path(__file__).parent.parent / "static"
"""Where ``npm run build`` (in ``client/``) writes the bundle; shipped in the package."""

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
_HOST = re.compile(r"[A-Za-z0-9.\-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")


def setup(app: web.Application, static: Path = STATIC) -> None:
    """Register the browser editor's routes on ``app``, serving the bundle in ``static``."""
    app[_ASSETS] = _Assets(static)
    app.router.add_get("/", _page)
    app.router.add_get("/d/{room:.+}", _page)
    app.router.add_get("/static/{path:.+}", _static)


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
        if len(path) > _MAX_PATH or has_control_characters(path) or "\\" in path:
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
