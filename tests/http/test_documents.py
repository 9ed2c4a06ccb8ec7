"""The document REST API and token revocation on a real server: real HTTP, real
WebSockets, real pycrdt editors receiving the server's changes live."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import aiohttp
import pytest
from pycrdt import Doc, Text

from collab.auth import Access
from collab.config import Config
from collab.errors import CloseCode
from collab.history.replay import replay
from collab.http.state import HUB
from collab.tools.cli import main
from tests.conftest import ROOT, Server, editor, eventually, raw_client, start_server
from tests.http.api import call, token


async def raw_history(
    session: aiohttp.ClientSession, server: Server, room: str, **kwargs: Any
) -> list[dict[str, Any]]:
    status, page = await call(session, server, "GET", f"/api/docs/{room}/history?raw=1", **kwargs)
    assert status == 200, page
    entries: list[dict[str, Any]] = page["entries"]
    return entries


# -- create and read --------------------------------------------------------------------


async def test_create_then_read_in_every_format(
    session: aiohttp.ClientSession, server: Server
) -> None:
    """POST /api/docs creates a document with its text (201, Location), GET content
    returns it as text, JSON and a Yjs update, and a second create is 409."""
    body = {"name": "team/notes", "content": "héllo 😀", "user": "ann"}
    status, created = await call(session, server, "POST", "/api/docs", body)
    assert status == 201
    assert created["name"] == "team/notes" and created["seq"] == 1
    async with session.post(server.http + "/api/docs", json={"name": "x y"}) as response:
        assert response.status == 201
        assert response.headers["Location"] == "/api/docs/x%20y/content"

    status, text = await call(session, server, "GET", "/api/docs/team/notes/content")
    assert (status, text) == (200, "héllo 😀")
    status, data = await call(session, server, "GET", "/api/docs/team/notes/content?format=json")
    assert status == 200
    assert (data["name"], data["seq"], data["content"]) == ("team/notes", 1, {ROOT: "héllo 😀"})
    status, state = await call(session, server, "GET", "/api/docs/team/notes/content?format=yjs")
    assert status == 200 and str(replay(state, []).get(ROOT, type=Text)) == "héllo 😀"
    assert (await raw_history(session, server, "team/notes"))[0]["authors"] == ["ann"]

    status, error = await call(session, server, "POST", "/api/docs", {"name": "team/notes"})
    assert (status, error) == (409, {"error": "document 'team/notes' exists"})
    status, listed = await call(session, server, "GET", "/api/docs")
    assert {d["name"] for d in listed["docs"]} == {"team/notes", "x y"}


async def test_large_content_answers_the_truth(
    session: aiohttp.ClientSession, server: Server
) -> None:
    """Creating and replacing content of 70 KB (past the 64 KiB frame boundary) answers
    201 and 200, every open editor receives it, and the stored text is what was sent."""
    big = "a" * 70_000
    status, created = await call(
        session, server, "POST", "/api/docs", {"name": "big", "content": big}
    )
    assert (status, created["seq"]) == (201, 1)
    async with editor(session, server.url("big")) as watcher:
        assert str(watcher) == big
        bigger = "b" * 80_000
        status, replaced = await call(
            session, server, "PUT", "/api/docs/big/content", {"text": bigger}
        )
        assert status == 200 and replaced["changed"], replaced
        await eventually(lambda: str(watcher) == bigger)
    assert await call(session, server, "GET", "/api/docs/big/content") == (200, bigger)


async def test_an_empty_new_document_reads_as_empty_text(
    session: aiohttp.ClientSession, server: Server
) -> None:
    """A document created without content exists, at seq 0, with an empty text."""
    status, created = await call(session, server, "POST", "/api/docs", {"name": "blank"})
    assert (status, created["seq"]) == (201, 0)
    assert await call(session, server, "GET", "/api/docs/blank/content") == (200, "")


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "message"),
    [
        ("POST", "/api/docs", b"{nope", 400, "the body is not JSON"),
        ("POST", "/api/docs", [1], 400, "give {"),
        ("POST", "/api/docs", {}, 400, 'give "name" as a string'),
        ("POST", "/api/docs", {"name": 5}, 400, 'give "name" as a string'),
        ("POST", "/api/docs", {"name": "a\x01"}, 400, "control"),
        ("POST", "/api/docs", {"name": "a", "content": 3}, 400, '"content" as a string'),
        ("GET", "/api/docs/nope/content", None, 404, "no document named 'nope'"),
        ("GET", "/api/docs/doc/content?format=xml", None, 400, "bad format"),
        ("GET", "/api/docs/doc/content?root=other", None, 404, "no root named 'other'"),
        ("PUT", "/api/docs/nope/content", "x", 404, "no document named 'nope'"),
        ("PUT", "/api/docs/doc/content", [1], 400, 'give {"text"'),
        ("PUT", "/api/docs/doc/content", {"txt": "a"}, 400, 'give "text" as a string'),
        (
            "PATCH",
            "/api/docs/nope/content",
            [{"op": "delete", "index": 0, "length": 0}],
            404,
            "no document",
        ),
        ("PATCH", "/api/docs/doc/content", b"{nope", 400, "the body is not JSON"),
        ("PATCH", "/api/docs/doc/content", [], 400, "give a list of operations"),
        ("PATCH", "/api/docs/doc/content", [{"op": "move", "index": 0}], 400, "insert or delete"),
        (
            "PATCH",
            "/api/docs/doc/content",
            [{"op": "insert", "index": -1, "text": "a"}],
            400,
            "index must be",
        ),
        ("PATCH", "/api/docs/doc/content", [{"op": "insert", "index": 0}], 400, "needs a text"),
        ("PATCH", "/api/docs/doc/content", [{"op": "delete", "index": 0}], 400, "needs a length"),
        (
            "PATCH",
            "/api/docs/doc/content",
            [{"op": "insert", "index": 9, "text": "a"}],
            409,
            "index 9 is past the end of the text (3 characters)",
        ),
        (
            "PATCH",
            "/api/docs/doc/content",
            [{"op": "delete", "index": 2, "length": 2}],
            409,
            "reaches past the end",
        ),
        ("DELETE", "/api/docs/nope", None, 404, "no document named 'nope'"),
        ("POST", "/api/docs/nope/undelete", None, 404, "no document named 'nope'"),
        ("POST", "/api/docs/doc/undelete", None, 409, "is not deleted"),
    ],
)
async def test_bad_requests_get_json_errors(
    session: aiohttp.ClientSession,
    server: Server,
    method: str,
    path: str,
    body: Any,
    status: int,
    message: str,
) -> None:
    """Every malformed or impossible request gets its status and a JSON error saying why."""
    assert (await call(session, server, "POST", "/api/docs", {"name": "doc", "content": "abc"}))[
        0
    ] == 201
    kwargs: dict[str, Any] = {}
    if isinstance(body, bytes | str):
        kwargs["data"] = body
    got, answer = await call(session, server, method, path, body, **kwargs)
    assert got == status, answer
    assert message in answer["error"]


async def test_too_large_is_413(session: aiohttp.ClientSession, config: Config) -> None:
    """Content that would make the document larger than max_document_size is refused
    with 413, on create, PUT and PATCH, and nothing is stored."""
    async with start_server(config.replace(max_document_size=1000)) as server:
        big = "x" * 2000
        status, error = await call(
            session, server, "POST", "/api/docs", {"name": "d", "content": big}
        )
        assert status == 413 and "max_document_size" in error["error"]
        assert (await call(session, server, "POST", "/api/docs", {"name": "d"}))[0] == 201
        status, error = await call(session, server, "PUT", "/api/docs/d/content", data=big)
        assert status == 413 and "larger than" in error["error"]
        assert (await call(session, server, "PUT", "/api/docs/d/content", data="x" * 600))[
            0
        ] == 200
        ops = [{"op": "insert", "index": 0, "text": "y" * 600}]
        status, error = await call(session, server, "PATCH", "/api/docs/d/content", ops)
        assert status == 413 and "exceed" in error["error"]
        assert await call(session, server, "GET", "/api/docs/d/content") == (200, "x" * 600)


# -- replace and patch, live ------------------------------------------------------------


async def test_put_reaches_a_live_editor_as_a_minimal_edit_by_the_caller(
    session: aiohttp.ClientSession, auth_server: Server
) -> None:
    """PUT content is applied as a minimal edit: a connected editor receives it at once,
    history stores it under the caller's name, and the unchanged text keeps its identity."""
    server = auth_server
    ann = token(name="Ann", user="ann")
    bob = token(name="Bob", user="bob")
    assert (await call(session, server, "POST", "/api/docs", {"name": "doc"}, token=ann))[0] == 201
    async with editor(session, server.url("doc", f"token={ann}")) as live:
        live.text += "hello world"
        await eventually(lambda: _seq(server, "doc") >= 1, what="typed")
        status, result = await call(
            session, server, "PUT", "/api/docs/doc/content", data="hello big world", token=bob
        )
        assert (status, result["changed"]) == (200, True)
        await eventually(lambda: str(live) == "hello big world", what="PUT relayed")
        assert result["seq"] == _seq(server, "doc")
        entries = await raw_history(session, server, "doc", token=bob)
        assert entries[0]["authors"] == ["Bob"]
        assert (entries[0]["inserted"], entries[0]["deleted"]) == (4, 0)
        status, diff = await call(
            session,
            server,
            "GET",
            f"/api/docs/doc/diff?from={result['seq'] - 1}&to={result['seq']}",
            token=bob,
        )
        assert [(s["op"], s["text"]) for s in diff["spans"]] == [
            ("equal", "hello "),
            ("insert", "big "),
            ("equal", "world"),
        ]

        status, again = await call(
            session, server, "PUT", "/api/docs/doc/content", {"text": "hello big world"}, token=bob
        )
        assert (status, again) == (200, {"name": "doc", "seq": result["seq"], "changed": False})
        status, json_put = await call(
            session, server, "PUT", "/api/docs/doc/content", {"text": "bye"}, token=bob
        )
        assert status == 200 and json_put["changed"]
        await eventually(lambda: str(live) == "bye", what="JSON PUT relayed")


def _seq(server: Server, room: str) -> int:
    loaded = server.app[HUB].rooms.get(room)
    return loaded.seq if loaded is not None else -1


async def test_patch_reaches_a_live_editor_and_is_stored_under_the_caller(
    session: aiohttp.ClientSession, server: Server
) -> None:
    """PATCH applies inserts and deletes in order, counting code points; a connected
    editor receives them and history stores them under the caller."""
    await call(session, server, "POST", "/api/docs", {"name": "p", "content": "héllo 😀 x"})
    async with editor(session, server.url("p")) as live:
        assert str(live) == "héllo 😀 x"
        ops = [
            {"op": "delete", "index": 0, "length": 1},
            {"op": "insert", "index": 0, "text": "H"},
            {"op": "insert", "index": 7, "text": "wörld "},
            {"op": "delete", "index": 13, "length": 2},
        ]
        status, result = await call(
            session, server, "PATCH", "/api/docs/p/content?user=carol", ops
        )
        assert (status, result["changed"]) == (200, True)
        await eventually(lambda: str(live) == "Héllo 😀wörld ", what="PATCH relayed")
        assert (await raw_history(session, server, "p"))[0]["authors"] == ["carol"]
        status, result = await call(
            session,
            server,
            "PATCH",
            "/api/docs/p/content",
            {"ops": [{"op": "insert", "index": 13, "text": "!"}], "user": "dan"},
        )
        assert status == 200
        await eventually(lambda: str(live) == "Héllo 😀wörld !", what="second PATCH")
        assert (await raw_history(session, server, "p"))[0]["authors"] == ["dan"]


async def test_content_of_an_unloaded_room(session: aiohttp.ClientSession, server: Server) -> None:
    """PUT on a document nobody has open loads it, stores the change and reads it back."""
    await call(session, server, "POST", "/api/docs", {"name": "cold", "content": "one"})
    await eventually(lambda: "cold" not in server.app[HUB].rooms, what="unloaded")
    status, result = await call(session, server, "PUT", "/api/docs/cold/content", data="one two")
    assert (status, result["seq"]) == (200, 2)
    await eventually(lambda: "cold" not in server.app[HUB].rooms, what="unloaded again")
    assert await call(session, server, "GET", "/api/docs/cold/content") == (200, "one two")


# -- soft delete ------------------------------------------------------------------------


async def test_delete_closes_members_refuses_joins_and_undelete_restores(
    session: aiohttp.ClientSession, server: Server
) -> None:
    """DELETE closes live members with 4404, hides the document (list, content, history:
    404), refuses joins with 4404 and a new create with 409; undelete brings it back with
    its history and lets editors in again."""
    async with editor(session, server.url("gone", "user=ann")) as live:
        live.text += "keep me"
        await eventually(lambda: _seq(server, "gone") >= 1, what="typed")
        async with raw_client(session, server.url("gone")) as watcher:
            await watcher.handshake()
            status, deleted = await call(session, server, "DELETE", "/api/docs/gone")
            assert status == 200
            assert set(deleted) == {"name", "deleted", "restorable_until"}
            assert await watcher.closed_with() == CloseCode.DOCUMENT_DELETED
            await eventually(lambda: live.ws.closed, what="editor closed")
            assert live.ws.close_code == CloseCode.DOCUMENT_DELETED

    async with raw_client(session, server.url("gone")) as late:
        assert await late.closed_with() == CloseCode.DOCUMENT_DELETED
    await eventually(lambda: "gone" not in server.app[HUB].rooms, what="unloaded")
    async with raw_client(session, server.url("gone")) as later:  # from the store this time
        assert await later.closed_with() == CloseCode.DOCUMENT_DELETED

    status, listed = await call(session, server, "GET", "/api/docs")
    assert "gone" not in [d["name"] for d in listed["docs"]]
    for path in ("/content", "/history", "/info", "/versions/latest"):
        status, error = await call(session, server, "GET", "/api/docs/gone" + path)
        assert status == 404, path
    status, error = await call(session, server, "GET", "/api/docs/gone/content")
    assert "is deleted" in error["error"]
    status, error = await call(session, server, "PUT", "/api/docs/gone/content", data="x")
    assert status == 404
    assert (await call(session, server, "DELETE", "/api/docs/gone"))[0] == 404
    status, error = await call(session, server, "POST", "/api/docs", {"name": "gone"})
    assert status == 409 and "deleted" in error["error"]
    status, error = await call(session, server, "POST", "/api/docs/gone/restore", {"seq": 0})
    assert status == 404

    status, back = await call(session, server, "POST", "/api/docs/gone/undelete")
    assert (status, back["name"], back["seq"]) == (200, "gone", 1)
    assert await call(session, server, "GET", "/api/docs/gone/content") == (200, "keep me")
    assert (await raw_history(session, server, "gone"))[0]["authors"] == ["ann"]
    status, listed = await call(session, server, "GET", "/api/docs")
    assert "gone" in [d["name"] for d in listed["docs"]]
    async with editor(session, server.url("gone")) as again:
        assert str(again) == "keep me"


async def test_undelete_while_the_room_is_still_loaded(
    session: aiohttp.ClientSession, config: Config
) -> None:
    """An undelete right after a delete, before the room unloads, admits editors again."""
    async with start_server(config.replace(room_grace=30)) as server:
        await call(session, server, "POST", "/api/docs", {"name": "quick", "content": "q"})
        assert (await call(session, server, "DELETE", "/api/docs/quick"))[0] == 200
        assert (await call(session, server, "POST", "/api/docs/quick/undelete"))[0] == 200
        async with editor(session, server.url("quick")) as live:
            assert str(live) == "q"


async def test_a_deletion_by_another_server_closes_rooms_here(
    session: aiohttp.ClientSession, config: Config
) -> None:
    """Two servers on one database: a document deleted on one closes its members on the
    other within revocation_poll, with 4404."""
    shared = config.replace(revocation_poll=0.1)
    async with start_server(shared) as one, start_server(shared) as two:
        await call(session, one, "POST", "/api/docs", {"name": "both", "content": "b"})
        async with raw_client(session, two.url("both")) as member:
            await member.handshake()
            assert (await call(session, one, "DELETE", "/api/docs/both"))[0] == 200
            assert await member.closed_with() == CloseCode.DOCUMENT_DELETED


async def test_purge_removes_documents_past_retention(
    session: aiohttp.ClientSession,
    config: Config,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`collab purge` removes documents deleted longer than deleted_retention ago with all
    their rows, keeps the others; a server purges at start too."""
    async with start_server(config) as server:
        for name in ("old", "kept", "live"):
            await call(session, server, "POST", "/api/docs", {"name": name, "content": name})
        await call(session, server, "DELETE", "/api/docs/old")
        await call(session, server, "DELETE", "/api/docs/kept")

    monkeypatch.setenv("COLLAB_DELETED_RETENTION", "3600")
    assert await asyncio.to_thread(main, ["purge", "--db", config.db]) == 0
    assert "purged 0 deleted documents" in capsys.readouterr().out
    monkeypatch.setenv("COLLAB_DELETED_RETENTION", "0")
    assert await asyncio.to_thread(main, ["purge", "--db", config.db, "--dry-run"]) == 0
    assert capsys.readouterr().out.splitlines()[:2] == ["kept", "old"]
    assert await asyncio.to_thread(_count, config.db, "documents") == 3
    await asyncio.to_thread(_undelete, config.db, "kept")
    assert await asyncio.to_thread(main, ["purge", "--db", config.db]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "old"
    assert await asyncio.to_thread(_count, config.db, "documents") == 2
    assert await asyncio.to_thread(_count, config.db, "updates") == 2

    async with start_server(config) as server:
        await call(session, server, "DELETE", "/api/docs/kept")
    async with start_server(config.replace(deleted_retention=0)) as server:
        status, created = await call(session, server, "POST", "/api/docs", {"name": "kept"})
        assert (status, created["seq"]) == (201, 0)  # a new document, not the old one


def _count(db: str, table: str) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def _undelete(db: str, name: str) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE documents SET deleted_ms = NULL WHERE name = ?", (name,))


# -- permissions ------------------------------------------------------------------------


async def test_routes_follow_the_websocket_permissions(
    session: aiohttp.ClientSession, auth_server: Server
) -> None:
    """No token is 401, another document's token 403, a read-only token reads but every
    change is 403; a write token may do everything; ?token= works like the header."""
    server = auth_server
    writer = token("team/*", name="Ann")
    reader = token("team/*", Access.READ, user="r")
    other = token("other/*", user="o")
    assert (await call(session, server, "POST", "/api/docs", {"name": "team/a"}, token=writer))[
        0
    ] == 201
    changes: list[tuple[str, str, Any]] = [
        ("POST", "/api/docs", {"name": "team/b"}),
        ("PUT", "/api/docs/team/a/content", {"text": "t"}),
        ("PATCH", "/api/docs/team/a/content", [{"op": "insert", "index": 0, "text": "p"}]),
        ("DELETE", "/api/docs/team/a", None),
        ("POST", "/api/docs/team/a/undelete", None),
    ]
    for method, path, body in [*changes, ("GET", "/api/docs/team/a/content", None)]:
        status, error = await call(session, server, method, path, body)
        assert (status, error) == (401, {"error": "missing token"}), path
        status, error = await call(session, server, method, path, body, token=other)
        assert (status, error) == (403, {"error": "no access to this document"}), path
    for method, path, body in changes:
        status, error = await call(session, server, method, path, body, token=reader)
        assert (status, error) == (403, {"error": "read-only"}), path
    assert await call(session, server, "GET", "/api/docs/team/a/content", token=reader) == (
        200,
        "",
    )
    status, _ = await call(
        session, server, "GET", f"/api/docs/team/a/content?token={writer}&format=json"
    )
    assert status == 200
    for (method, path, body), expected in zip(changes, [201, 200, 200, 200, 200], strict=True):
        status, answer = await call(session, server, method, path, body, token=writer)
        assert status == expected, (path, answer)
    assert await call(session, server, "GET", "/api/docs/team/a/content", token=reader) == (
        200,
        "pt",
    )
    entries = await raw_history(session, server, "team/a", token=reader)
    assert {a for e in entries for a in e["authors"]} == {"Ann"}


# -- token revocation -------------------------------------------------------------------


# -- the OpenAPI document ---------------------------------------------------------------


async def test_openapi_lists_every_api_route(
    session: aiohttp.ClientSession, server: Server
) -> None:
    """Every /api route the application registers is described in /api/openapi.json,
    with the error schema, so the document cannot fall behind the code."""
    status, document = await call(session, server, "GET", "/api/openapi.json")
    assert status == 200 and document["openapi"].startswith("3.1")
    registered = set()
    for route in server.app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if path.startswith("/api") and route.method != "HEAD":
            registered.add((path.replace("{room:.+}", "{room}"), route.method.lower()))
    assert len(registered) > 20
    described = {
        (path, method)
        for path, item in document["paths"].items()
        for method in item
        if method != "parameters"
    }
    assert registered - described == set()
    assert described - registered == set()
    assert document["components"]["schemas"]["Error"]["required"] == ["error"]
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method != "parameters" and path != "/api/openapi.json":
                assert "400" in operation["responses"] or "401" in operation["responses"]


async def test_pycrdt_editor_offline_edits_merge_with_a_put(
    session: aiohttp.ClientSession, server: Server
) -> None:
    """A PUT made while an editor is away merges with the editor's own offline edits
    when it reconnects (the replacement is an ordinary CRDT change)."""
    await call(session, server, "POST", "/api/docs", {"name": "m", "content": "alpha beta"})
    doc: Doc[Any] = Doc()
    async with editor(session, server.url("m"), doc) as first:
        assert str(first) == "alpha beta"
    doc.get(ROOT, type=Text).insert(0, ">> ")
    status, _ = await call(session, server, "PUT", "/api/docs/m/content", data="alpha gamma")
    assert status == 200
    async with editor(session, server.url("m"), doc) as back:
        await eventually(lambda: str(back) == ">> alpha gamma", what="merged")
    await eventually(
        lambda: _stored_text(session, server, "m", ">> alpha gamma"), what="stored merge"
    )


async def _stored_text(
    session: aiohttp.ClientSession, server: Server, room: str, expected: str
) -> bool:
    return await call(session, server, "GET", f"/api/docs/{room}/content") == (200, expected)
