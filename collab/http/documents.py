"""The REST API for documents: the list, create, delete, undelete and content.

Owns parsing these requests and shaping their responses:

- ``GET /api/docs`` lists the documents the caller may see, most recently edited first
  (``Store.list_documents``, and the people online from the hub's loaded rooms);
- ``POST /api/docs`` creates a document (optionally with text); ``DELETE
  /api/docs/{room}`` deletes it softly (hidden, its room closed with 4404, restorable for
  ``deleted_retention``); ``POST /api/docs/{room}/undelete`` brings it back;
- ``GET /api/docs/{room}/content`` reads the newest version (text, JSON or a Yjs update);
  ``PUT`` replaces a root's text, or with a ProseMirror document a rich-text root's tree,
  ``PATCH`` inserts and deletes in a text. Both are
  computed here (``edit.py``, in a worker thread) and applied through ``Hub.apply``: relayed
  live to the room, stored with the caller as author, like any client's edit.

Permissions are the WebSocket's (``auth.py``): reading needs read access to the
document, every change needs write access. Handlers raise; ``errors.py`` answers. It runs
no SQL (``collab.store``) and no Yjs logic (``edit.py``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable
from typing import Any
from urllib.parse import quote

from aiohttp import web

from collab.auth import Access
from collab.clock import format_ms
from collab.errors import BadRequest, Conflict, DocumentTooLarge, Forbidden, NotFound
from collab.history.edit import patch_update, replace_update, rich_update, text_update
from collab.history.replay import TEXT_ROOT
from collab.history.service import History
from collab.http.body import MAX_JSON, load_models, read
from collab.http.errors import json_response
from collab.http.openapi import WRITE, Route
from collab.http.rich import RICH_FORMATS, rich_response
from collab.http.state import CONFIG, HUB, author, authorize, identify
from collab.store import DocumentInfo, DocumentState, DocumentStore, now_ms
from collab.store.documents import Reset
from collab.sync.awareness import announced_user
from collab.sync.lineage import state_vector_of
from collab.sync.room import Room

__all__ = ["ROUTES"]

log = logging.getLogger(__name__)

_DEFAULT_LIMIT, _MAX_LIMIT = 50, 200

# A room name may contain "/": DELETE /api/docs/{room} takes every name but one ending in
# /named-versions/<id>, which is the history API's DELETE (so no path matches two routes).
DOC = "/api/docs/{room:(?!.*/named-versions/[^/]+$).+}"
CONTENT = "/api/docs/{room:.+}/content"


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


async def _state(request: web.Request, name: str) -> bytes:
    """The document as it is now: the live room's if loaded here, else the newest stored
    version."""
    hub = request.app[HUB]
    room = hub.rooms.get(name)
    if room is not None:
        return room.doc.get_update()
    history = History(hub.store, hub.rooms.__contains__)
    head = await history.head(name)
    return (await history.version(head, head.last_seq)).state


async def _apply(request: web.Request, name: str, update: bytes, author: str | None) -> int:
    hub = request.app[HUB]
    return await hub.apply(name, update, author, f"api-{uuid.uuid4().hex[:12]}")


# -- documents --------------------------------------------------------------------------


async def _list(request: web.Request) -> web.StreamResponse:
    """``GET /api/docs?q=&limit=&cursor=``: documents, most recently edited first."""
    query = request.query
    try:
        limit = int(query.get("limit", _DEFAULT_LIMIT))
    except ValueError:
        raise BadRequest("limit must be an integer") from None
    if not 1 <= limit <= _MAX_LIMIT:
        raise BadRequest(f"limit must be between 1 and {_MAX_LIMIT}")
    before = None
    if "cursor" in query:
        before = _decode_cursor(query["cursor"])
        if before is None:
            raise BadRequest("invalid cursor")
    identity = identify(request)
    hub = request.app[HUB]
    contains = query.get("q", "").strip()
    docs: list[dict[str, Any]] = []
    last: tuple[int, int] | None = None  # the key of the last document listed
    more = False
    scan = before
    while not more:
        # One more row than needed tells whether the scan can go on. Documents this
        # identity may not see are skipped, so a page may take more than one query.
        page = await hub.store.list_documents(contains=contains, limit=limit + 1, before=scan)
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
    next_cursor = f"{last[0]}.{last[1]}" if more and last is not None else None
    return json_response({"docs": docs, "next": next_cursor})


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
        "created": format_ms(info.created_ms),
        "updated": format_ms(info.updated_ms),
        "size": size,
        "updates": info.updates,
        "online": online,
        "people": list(people.values()),
        "access": access.name.lower(),
    }


def _decode_cursor(cursor: str) -> tuple[int, int] | None:
    at, _, doc_id = cursor.partition(".")
    try:
        return int(at), int(doc_id)
    except ValueError:
        return None


async def _create(request: web.Request) -> web.StreamResponse:
    await load_models()  # pydantic, imported off the loop once
    from collab.http.models import CreateDocument, parse

    identify(request)  # 401 before reading a body that may be large
    limit = request.app[CONFIG].max_document_size
    data = parse(CreateDocument, await read(request, limit + MAX_JSON))
    name = data.name
    identity = authorize(request, name, Access.WRITE)
    if data.content is not None and len(data.content.encode()) > limit:
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
    by = author(request, identity, data.user)
    if data.content:
        seq = await _apply(request, name, text_update(data.content, TEXT_ROOT), by)
    log.info("created document %r by %r", name, by)
    location = "/api/docs/" + quote(name, safe="/") + "/content"
    return json_response(
        {"name": name, "created": format_ms(created.created_ms), "seq": seq},
        201,
        {"Location": location},
    )


async def _delete(request: web.Request) -> web.StreamResponse:
    name = request.match_info["room"]
    identity = authorize(request, name, Access.WRITE)
    hub = request.app[HUB]
    await _live(request, name)
    at = now_ms()
    if not await DocumentStore(hub.store).delete(name, at):
        raise NotFound(f"no document named {name!r}")  # deleted meanwhile
    await hub.evict(name)
    retention = int(request.app[CONFIG].deleted_retention * 1000)
    log.info("deleted document %r by %r", name, identity.author)
    return json_response(
        {"name": name, "deleted": format_ms(at), "restorable_until": format_ms(at + retention)}
    )


async def _reset(request: web.Request) -> web.StreamResponse:
    """Start a document over on purpose (admin): a new lineage, the old history retired
    but readable (``?lineage=`` on the history API), every copy of it refused (4410)."""
    await load_models()  # pydantic, imported off the loop once
    from collab.http.models import ResetDocument, parse

    name = request.match_info["room"]
    identity = authorize(request, name, Access.WRITE)
    if not identity.admin:
        raise Forbidden("only an admin token may reset a document")
    limit = request.app[CONFIG].max_document_size
    data = parse(ResetDocument, await read(request, limit + MAX_JSON))
    if data.content is not None and len(data.content.encode()) > limit:
        raise DocumentTooLarge(f"content larger than max_document_size ({limit} bytes)")
    await _live(request, name)
    by = author(request, identity, data.user)
    content = None
    if data.content:
        content = await asyncio.to_thread(text_update, data.content, TEXT_ROOT)
    documents = DocumentStore(request.app[HUB].store)
    connection_id = f"api-{uuid.uuid4().hex[:12]}"

    def change() -> Awaitable[Reset | None]:
        return documents.reset(name, state_vector_of, content, by, connection_id)

    # The room (if loaded here) is thrown away and loaded again around the transaction:
    # its members are closed with 4410, and no joiner sees the old history in between.
    done = await request.app[HUB].start_over(name, change)
    if done is None:
        raise NotFound(f"no document named {name!r}")  # deleted meanwhile
    log.info("reset document %r by %r: lineage %s -> %s", name, by, done.retired, done.lineage)
    return json_response(
        {"name": name, "lineage": done.lineage, "retired": done.retired, "seq": done.seq}
    )


async def _undelete(request: web.Request) -> web.StreamResponse:
    name = request.match_info["room"]
    identity = authorize(request, name, Access.WRITE)
    hub = request.app[HUB]
    documents = DocumentStore(hub.store)
    if not await documents.undelete(name):
        if await documents.find(name) is None:
            raise NotFound(f"no document named {name!r}")
        raise Conflict(f"document {name!r} is not deleted")
    hub.readmit(name)
    head = await History(hub.store, hub.rooms.__contains__).head(name)
    log.info("undeleted document %r by %r", name, identity.author)
    return json_response(
        {"name": name, "created": format_ms(head.created_ms), "seq": head.last_seq}
    )


# -- content ----------------------------------------------------------------------------


async def _content(request: web.Request) -> web.StreamResponse:
    name = request.match_info["room"]
    authorize(request, name, Access.READ)
    await _live(request, name)
    hub = request.app[HUB]
    history = History(hub.store, hub.rooms.__contains__)
    head = await history.head(name)
    fmt = request.query.get("format", "text")
    if fmt == "text":
        text = await history.version_text(head, head.last_seq, request.query.get("root"))
        return web.Response(
            text=text, content_type="text/plain", charset="utf-8", headers=_seq(head.last_seq)
        )
    if fmt == "json":
        version = await history.version_json(head, head.last_seq)
        return json_response({"name": name, **version})
    if fmt == "yjs":
        state = (await history.version(head, head.last_seq)).state
        return web.Response(
            body=state, content_type="application/octet-stream", headers=_seq(head.last_seq)
        )
    if fmt in RICH_FORMATS:
        found, document = await history.version_rich(
            head, head.last_seq, request.query.get("root"), fmt
        )
        return rich_response(document, found.seq, found.created_ms)
    raise BadRequest(f"bad format {fmt!r}: expected text, json, yjs, prosemirror or html")


def _seq(seq: int) -> dict[str, str]:
    return {"X-Collab-Seq": str(seq)}


async def _replace(request: web.Request) -> web.StreamResponse:
    await load_models()  # pydantic, imported off the loop once
    from collab.http.models import ReplaceContent, ReplaceRichContent, parse

    name = request.match_info["room"]
    identity = authorize(request, name, Access.WRITE)
    limit = request.app[CONFIG].max_document_size
    body = await read(request, limit)
    user = None
    document: Any = None
    root = request.query.get("root")
    if request.content_type == "application/json" and ReplaceRichContent.wanted(_json(body)):
        rich = parse(ReplaceRichContent, body)
        text, document, user = "", rich.doc, rich.user
    elif request.content_type == "application/json":
        data = parse(ReplaceContent, body)
        text, user = data.text, data.user
    else:
        try:
            text = body.decode()
        except UnicodeDecodeError:
            raise BadRequest("the body is not UTF-8 text") from None
    if len(text.encode()) > limit:
        raise DocumentTooLarge(f"content larger than max_document_size ({limit} bytes)")
    await _live(request, name)
    state = await _state(request, name)
    if document is not None:
        update = await asyncio.to_thread(rich_update, state, root, document)
    else:
        update = await asyncio.to_thread(replace_update, state, root, text)
    return await _changed(request, name, update, author(request, identity, user))


def _json(body: bytes) -> Any:
    """The body as JSON, or ``None`` when it is not (``parse`` then says why)."""
    try:
        return json.loads(body)
    except ValueError:
        return None


async def _patch(request: web.Request) -> web.StreamResponse:
    await load_models()  # pydantic, imported off the loop once
    from collab.http.models import PatchContent, parse

    name = request.match_info["room"]
    identity = authorize(request, name, Access.WRITE)
    data = parse(PatchContent, await read(request, request.app[CONFIG].max_document_size))
    await _live(request, name)
    state = await _state(request, name)
    root = request.query.get("root")
    update = await asyncio.to_thread(patch_update, state, root, data.operations())
    return await _changed(request, name, update, author(request, identity, data.user))


async def _changed(
    request: web.Request, name: str, update: bytes, by: str | None
) -> web.StreamResponse:
    if update:
        seq = await _apply(request, name, update, by)
        log.info("content of %r changed by %r: seq %d", name, by, seq)
    else:  # the text is already what was asked for
        hub = request.app[HUB]
        room = hub.rooms.get(name)
        if room is not None:
            seq = room.seq
        else:
            seq = (await History(hub.store, hub.rooms.__contains__).head(name)).last_seq
    return json_response({"name": name, "seq": seq, "changed": bool(update)})


_TAG = "documents"
_LIST_QUERY = (
    ("q", "name contains this, ignoring case"),
    ("limit", "1-200 (default 50)", {"type": "integer"}),
    ("cursor", "the previous page's next"),
)
_CONTENT_FORMATS = ["text", "json", "yjs", "prosemirror", "html"]
_CONTENT_QUERY = (
    ("format", "text, json, yjs, prosemirror or html", {"enum": _CONTENT_FORMATS}),
    ("root", "for text, prosemirror, html: the root (default the main root)"),
)
_WRITE_QUERY = (("root", "the root to write (default the main root)"),)
ROUTES = (
    Route(
        "GET", "/api/docs", _list,
        "Documents, most recently edited first (deleted ones left out)", _TAG,
        (200, "a page of documents"), (400, 401, 503), _LIST_QUERY,
    ),
    Route(
        "POST", "/api/docs", _create,
        "Create a document, optionally with text in its content root", _TAG,
        (201, "created"), WRITE, body="CreateDocument",
    ),
    Route(
        "DELETE", DOC, _delete,
        "Delete softly: hidden, its room closed (4404), restorable for deleted_retention", _TAG,
        (200, "deleted"),
    ),
    Route(
        "POST", "/api/docs/{room:.+}/reset", _reset,
        "Start the document over (admin): a new lineage, empty or with text; the old "
        "history stays readable (?lineage= on the history API) and its copies are refused "
        "(4410)", _TAG,
        (200, "reset"), (400, 401, 403, 404, 413, 503), body="ResetDocument",
    ),
    Route(
        "POST", "/api/docs/{room:.+}/undelete", _undelete,
        "Restore a deleted document, with its history", _TAG,
        (200, "restored"), (400, 401, 403, 404, 409, 503),
    ),
    Route(
        "GET", CONTENT, _content,
        "The newest version: text (default), JSON of every root, or a Yjs update", _TAG,
        (200, "the content root's text (format=text)"), query=_CONTENT_QUERY,
    ),
    Route(
        "PUT", CONTENT, _replace,
        "Replace a root's content (text, or a ProseMirror document for rich text): "
        "applied as a minimal edit, relayed live, stored with the caller as author", _TAG,
        (200, "applied"), WRITE, _WRITE_QUERY, body="ReplaceContent", text_body=True,
    ),
    Route(
        "PATCH", CONTENT, _patch,
        "Insert and delete in the content text, in order; indexes count code points", _TAG,
        (200, "applied"), WRITE, _WRITE_QUERY, body="PatchContent",
    ),
)  # fmt: skip
