"""Lineage end to end: a document whose history was replaced (``collab load --replace``),
purged and created again, or reset refuses the clients that still hold the old one, with 4410 on
``/ws`` (y-websocket stops retrying) and PermissionDenied on ``/hocuspocus``; clients of
the current history merge as before. See docs/lineage.md."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pycrdt import Doc, Text

from collab.auth import Access, mint
from collab.config import Config
from collab.errors import CloseCode
from collab.sync import hocuspocus as hp
from collab.sync.protocol import SyncStep1, decode, encode_sync_step2
from collab.tools.cli import main
from tests.conftest import Server, editor, eventually, raw_client, start_server
from tests.http.api import call
from tests.http.test_auth import SECRET
from tests.jsclient import HocuspocusClient, JsClient
from tests.services import postgres_database

OLD = "old text from the stale browser."
NEW = "replacement text."


async def _cli(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))


async def _content(session: aiohttp.ClientSession, server: Server, room: str) -> str:
    status, body = await call(session, server, "GET", f"/api/docs/{room}/content")
    assert status == 200, body
    return str(body)


async def _write(session: aiohttp.ClientSession, server: Server, room: str, text: str) -> Doc[Any]:
    """A client writes ``text`` into ``room`` and keeps its document (as a tab would)."""
    doc: Doc[Any] = Doc()
    async with editor(session, server.url(room), doc) as client:
        client.text += text

        async def stored() -> bool:
            return await _content(session, server, room) == text

        await eventually(stored, what=f"{room} stored")
    return doc


async def _replace_lin(config: Config, tmp_path: Path) -> None:
    """The operator's move: dump ``other`` and load it as ``lin``, replacing it."""
    dumped = tmp_path / "other.jsonl"
    assert await _cli("dump", "other", "--db", config.db, "--out", str(dumped)) == 0
    loaded = await _cli(
        "load", str(dumped), "--db", config.db, "--rename", "other=lin", "--replace"
    )
    assert loaded == 0


async def _upload(session: aiohttp.ClientSession, server: Server, doc: Doc[Any]) -> int | None:
    """What a reconnecting y-websocket client does with its copy: answer the server's
    SyncStep1 with everything the server lacks. Returns the close code it gets."""
    async with raw_client(session, server.url("lin")) as client:
        request = decode(await client.recv_bytes())
        assert isinstance(request, SyncStep1)
        await client.ws.send_bytes(encode_sync_step2(doc.get_update(request.state_vector)))
        return await client.closed_with()


async def _upload_hocuspocus(
    session: aiohttp.ClientSession, server: Server, doc: Doc[Any]
) -> str | None:
    """What a reconnecting Hocuspocus provider does with its copy of ``lin``: open it,
    answer the server's SyncStep1 with what the server lacks. Returns the reason of the
    PermissionDenied it gets (``None``: accepted)."""
    lin = hp.Address("lin")
    async with session.ws_connect(f"ws://127.0.0.1:{server.port}/hocuspocus") as ws:
        await ws.send_bytes(hp.encode_token(lin, ""))
        while True:
            msg = await asyncio.wait_for(ws.receive(), 10)
            assert msg.type is aiohttp.WSMsgType.BINARY, msg
            frame = hp.decode(msg.data)
            if isinstance(frame, hp.Sync) and isinstance(frame.body, SyncStep1):
                missing = doc.get_update(frame.body.state_vector)
                await ws.send_bytes(hp.encode_sync_step2(lin, missing))
            elif isinstance(frame, hp.PermissionDenied):
                return frame.reason
            elif isinstance(frame, hp.SyncStatus):
                return None  # the upload was stored


@pytest.fixture(params=["sqlite", "postgresql"])
async def any_config(request: pytest.FixtureRequest, config: Config) -> AsyncIterator[Config]:
    """The test's config on SQLite, then on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield config
        return
    async with postgres_database() as url:
        yield config.replace(db=url)


async def test_a_replaced_document_refuses_the_old_copy(
    any_config: Config, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """After ``load --replace`` the stale copy's upload is closed with 4410 and leaves
    the replacement alone; a client of the new history still merges its offline edits;
    /info names the new lineage and the retired one. On SQLite and on PostgreSQL."""
    config = any_config
    async with start_server(config) as server:
        stale = await _write(session, server, "lin", OLD)
        await _write(session, server, "other", NEW)
        _, before = await call(session, server, "GET", "/api/docs/lin/info")
    await _replace_lin(config, tmp_path)
    async with start_server(config) as server:
        assert await _content(session, server, "lin") == NEW
        assert await _upload(session, server, stale) == CloseCode.LINEAGE_RETIRED
        assert await _content(session, server, "lin") == NEW
        _, metrics = await call(session, server, "GET", "/metrics")
        assert "collab_stale_lineage_refused_total 1.0" in metrics
        current: Doc[Any] = Doc()
        async with editor(session, server.url("lin"), current):
            pass
        current.get("content", type=Text).insert(0, "offline: ")  # while disconnected
        async with editor(session, server.url("lin"), current):

            async def merged() -> bool:
                return await _content(session, server, "lin") == "offline: " + NEW

            await eventually(merged, what="the offline edit merged")
        _, info = await call(session, server, "GET", "/api/docs/lin/info")
        _, cheap = await call(session, server, "GET", "/api/docs/lin/lineage")
        missing, _ = await call(session, server, "GET", "/api/docs/nobody/lineage")
    assert missing == 404
    assert {k: cheap[k] for k in ("lineage", "retired_lineages")} == {
        k: info[k] for k in ("lineage", "retired_lineages")
    }
    assert info["lineage"] and info["lineage"] != before["lineage"]
    assert [(r["lineage"], r["reason"]) for r in info["retired_lineages"]] == [
        (before["lineage"], "replaced")
    ]


async def test_a_purged_name_created_again_refuses_the_old_copy(
    config: Config, session: aiohttp.ClientSession
) -> None:
    """Deleted, purged (at the next start) and created again under its name: the old
    copy is refused there too, on ``/ws`` (4410) and on ``/hocuspocus``
    (PermissionDenied)."""
    async with start_server(config) as server:
        stale = await _write(session, server, "lin", OLD)
        status, _ = await call(session, server, "DELETE", "/api/docs/lin")
        assert status == 200
    purging = config.replace(deleted_retention=0)
    async with start_server(purging) as server:
        await _write(session, server, "lin", NEW)  # a new document of the same name
        assert await _upload(session, server, stale) == CloseCode.LINEAGE_RETIRED
        refused = await _upload_hocuspocus(session, server, stale)
        assert refused is not None and "replaced" in refused
        assert await _content(session, server, "lin") == NEW
        _, info = await call(session, server, "GET", "/api/docs/lin/info")
    assert [r["reason"] for r in info["retired_lineages"]] == ["purged"]


async def _old_clients(server: Server, name: str) -> tuple[JsClient, HocuspocusClient]:
    """An unmodified y-websocket client and a Hocuspocus provider, both holding ``OLD``
    in room ``lin`` (the y-websocket client typed it). The caller quits them."""
    js = await JsClient.start(server.url("").rstrip("/"), "lin", name)
    hocus = await HocuspocusClient.start_socket(f"ws://127.0.0.1:{server.port}/hocuspocus")
    try:
        await eventually(js.synced, what="js synced")
        await js.insert(0, OLD)
        await hocus.open("lin")
        await eventually(lambda: hocus.seen("text", doc="lin", text=OLD), what="provider")
    except BaseException:
        await js.quit()
        await hocus.quit()
        raise
    return js, hocus


async def test_stale_y_websocket_and_hocuspocus_clients_stop(
    config: Config, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """Unmodified clients that stayed open while the document was replaced: the
    y-websocket client is closed with 4410 and stops retrying; the Hocuspocus provider is
    answered PermissionDenied; the replacement stays as it is."""
    async with start_server(config) as server:
        port = server.port
        await _write(session, server, "other", NEW)
        js, hocus = await _old_clients(server, "stale-js")
        try:

            async def stored() -> bool:
                return await _content(session, server, "lin") == OLD

            await eventually(stored, what="old text stored")
        except BaseException:
            await js.quit()
            await hocus.quit()
            raise
    try:
        await _replace_lin(config, tmp_path)
        async with start_server(config, port=port) as server:
            await eventually(
                lambda: js.seen("closed", code=CloseCode.LINEAGE_RETIRED),
                timeout=15,
                what="the y-websocket client stopped with 4410",
            )
            await eventually(
                lambda: hocus.seen("denied", doc="lin"), timeout=15, what="provider refused"
            )
            assert await _content(session, server, "lin") == NEW
    finally:
        await js.quit()
        await hocus.quit()


# -- reset: a document started over on purpose --------------------------------------------


async def _lineage(session: aiohttp.ClientSession, server: Server, room: str) -> dict[str, Any]:
    status, body = await call(session, server, "GET", f"/api/docs/{room}/lineage")
    assert status == 200, body
    return dict(body)


async def test_a_reset_document_refuses_the_old_copy_and_keeps_its_history(
    any_config: Config, session: aiohttp.ClientSession
) -> None:
    """``POST .../reset`` with text: the new history holds just that text, a stale copy's
    upload is refused with 4410, a client of the new history merges its offline edits
    after a restart, and the old history is still readable (``?lineage=``) and can be
    restored from as a new change. On SQLite and on PostgreSQL."""
    config = any_config
    async with start_server(config) as server:
        stale = await _write(session, server, "lin", OLD)
        before = (await _lineage(session, server, "lin"))["lineage"]
        status, done = await call(session, server, "POST", "/api/docs/lin/reset", {"content": NEW})
        assert status == 200, done
        assert (done["retired"], done["seq"]) == (before, 1) and done["lineage"] != before
        assert await _content(session, server, "lin") == NEW
        assert await _upload(session, server, stale) == CloseCode.LINEAGE_RETIRED
        assert await _upload_hocuspocus(session, server, stale) is not None
        assert await _content(session, server, "lin") == NEW
        current: Doc[Any] = Doc()
        async with editor(session, server.url("lin"), current):
            pass
    current.get("content", type=Text).insert(0, "offline: ")  # while the server is down
    async with start_server(config) as server:
        async with editor(session, server.url("lin"), current):

            async def merged() -> bool:
                return await _content(session, server, "lin") == "offline: " + NEW

            await eventually(merged, what="the offline edit merged")
        lineage = await _lineage(session, server, "lin")
        assert [
            (r["lineage"], r["reason"], r["readable"]) for r in lineage["retired_lineages"]
        ] == [(before, "reset", True)]
        status, old = await call(
            session, server, "GET", f"/api/docs/lin/versions?format=text&lineage={before}"
        )
        assert (status, old) == (200, OLD)
        status, page = await call(
            session, server, "GET", f"/api/docs/lin/history?lineage={before}"
        )
        assert status == 200 and page["seq"] >= 1 and page["lineage"] == before
        _, now = await call(session, server, "GET", "/api/docs/lin/history")
        assert now["lineage"] == lineage["lineage"] != before
        status, _ = await call(
            session, server, "GET", "/api/docs/lin/history?lineage=0123456789abcdef"
        )
        assert status == 404
        status, restored = await call(
            session,
            server,
            "POST",
            "/api/docs/lin/restore",
            {"seq": page["seq"], "lineage": before},
        )
        assert status == 200 and restored["changed"], restored
        assert await _content(session, server, "lin") == OLD
        assert await _upload(session, server, stale) == CloseCode.LINEAGE_RETIRED
        status, listed = await call(session, server, "GET", "/api/docs")
    assert status == 200
    assert [d["name"] for d in listed["docs"]] == ["lin"]  # the archive is not listed


async def test_a_reset_closes_live_editors_with_4410_and_reloads_the_room(
    config: Config, session: aiohttp.ClientSession
) -> None:
    """Editors connected during a reset are closed with 4410 (a y-websocket client stops;
    a Hocuspocus provider is refused that document); a new joiner gets the empty new
    history, and nothing the old room held reaches it."""
    async with start_server(config) as server:
        js, hocus = await _old_clients(server, "live-js")
        try:
            status, done = await call(session, server, "POST", "/api/docs/lin/reset", {})
            assert status == 200 and done["seq"] == 0, done
            await eventually(
                lambda: js.seen("closed", code=CloseCode.LINEAGE_RETIRED),
                what="the y-websocket client stopped with 4410",
            )
            await eventually(lambda: hocus.seen("denied", doc="lin"), what="provider refused")
            assert await _content(session, server, "lin") == ""
            fresh: Doc[Any] = Doc()
            async with editor(session, server.url("lin"), fresh) as client:
                assert str(client.text) == ""
                client.text += NEW

                async def stored() -> bool:
                    return await _content(session, server, "lin") == NEW

                await eventually(stored, what="the new history's first edit")
        finally:
            await js.quit()
            await hocus.quit()


async def test_collab_reset_on_a_running_server_reaches_its_editors(
    config: Config, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """``collab reset ROOM --content FILE`` while a server runs: within
    ``revocation_poll`` the server closes the room's editors with 4410 and serves the new
    history; the stale copy stays refused."""
    config = config.replace(revocation_poll=0.2)
    text = tmp_path / "start.txt"
    text.write_text(NEW, encoding="utf-8")
    async with start_server(config) as server:
        stale: Doc[Any] = Doc()
        async with raw_client(session, server.url("lin")) as watcher:
            async with editor(session, server.url("lin"), stale) as client:
                client.text += OLD

                async def stored() -> bool:
                    return await _content(session, server, "lin") == OLD

                await eventually(stored, what="old text stored")
                assert await _cli("reset", "lin", "--db", config.db, "--content", str(text)) == 0
                assert await watcher.closed_with() == CloseCode.LINEAGE_RETIRED
        assert await _content(session, server, "lin") == NEW
        assert await _upload(session, server, stale) == CloseCode.LINEAGE_RETIRED
    assert await _cli("reset", "nobody", "--db", config.db) == 1


async def test_only_an_admin_token_may_reset(
    config: Config, session: aiohttp.ClientSession
) -> None:
    """With auth on, a writer without the admin claim gets 403 and the document keeps its
    lineage; an admin token resets it."""
    auth = config.replace(auth_secret=SECRET)
    writer = mint(SECRET, user_id="w", docs=[("*", Access.WRITE)])
    admin = mint(SECRET, user_id="a", docs=[("*", Access.WRITE)], admin=True)
    async with start_server(auth) as server:
        status, _ = await call(session, server, "POST", "/api/docs", {"name": "lin"}, token=writer)
        assert status == 201
        status, body = await call(session, server, "POST", "/api/docs/lin/reset", {}, token=writer)
        assert status == 403, body
        status, body = await call(session, server, "POST", "/api/docs/lin/reset", {}, token=admin)
        assert status == 200, body
        status, body = await call(
            session, server, "POST", "/api/docs/nobody/reset", {}, token=admin
        )
        assert status == 404, body


async def test_a_restore_after_a_replacement_is_never_refused(
    config: Config, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """A document replaced and then edited: restoring a version of the new history is an
    ordinary change (the server's own structs), and an editor of the new history that
    held the room during the restore keeps syncing."""
    async with start_server(config) as server:
        await _write(session, server, "lin", OLD)
        await _write(session, server, "other", NEW)
    await _replace_lin(config, tmp_path)
    async with start_server(config) as server:
        current: Doc[Any] = Doc()
        async with editor(session, server.url("lin"), current) as client:
            client.text += " more."

            async def edited() -> bool:
                return await _content(session, server, "lin") == NEW + " more."

            await eventually(edited, what="the edit stored")
            _, page = await call(session, server, "GET", "/api/docs/lin/history?raw=1")
            first = min(entry["seq"] for entry in page["entries"])
            status, restored = await call(
                session, server, "POST", "/api/docs/lin/restore", {"seq": first}
            )
            assert status == 200 and restored["changed"], restored
            await eventually(lambda: str(client.text) == NEW, what="the restore relayed")
            client.text += " again."

            async def again() -> bool:
                return await _content(session, server, "lin") == NEW + " again."

            await eventually(again, what="editing after the restore")
