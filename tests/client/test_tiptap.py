"""An unmodified Tiptap 3 editor (StarterKit, Collaboration, CollaborationCaret) in
Debian's Chromium, over ``@hocuspocus/provider`` on ``/hocuspocus`` and over y-websocket on
``/ws``, in the same documents: what a Tiptap app sees when it moves to collab."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

from collab.auth import Access
from collab.config import Config
from collab.http.state import HUB
from tests.browser import MS, tiptap_page
from tests.conftest import Server, eventually, start_server
from tests.http.api import SECRET, call, token

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page


async def _state(page: Page) -> dict[str, Any]:
    state: dict[str, Any] = await page.evaluate("window.editorState()")
    return state


async def test_tiptap_over_hocuspocus_and_over_ws_edit_one_document(
    server: Server, browser: Browser, tiptap_bundle: Path, session: aiohttp.ClientSession
) -> None:
    """Two Chromium pages, one Tiptap editor each (one per protocol): each sees the
    other's paragraphs, formatting and caret; the Hocuspocus one shows "all saved"
    (no unsynced changes) and what it typed is in the store."""
    port = server.port
    hocus = await tiptap_page(
        browser, tiptap_bundle, url=f"ws://127.0.0.1:{port}/hocuspocus", doc="tip",
        protocol="hocuspocus", name="Hilda",
    )  # fmt: skip
    ws = await tiptap_page(
        browser, tiptap_bundle, url=f"ws://127.0.0.1:{port}/ws", doc="tip",
        protocol="ws", name="Wanda", color="#dc2626",
    )  # fmt: skip
    try:
        await hocus.wait_for_function("window.editorState().synced", timeout=MS)
        await ws.wait_for_function("window.editorState().synced", timeout=MS)
        await hocus.evaluate("window.typeText('from hocuspocus')")
        await ws.wait_for_function(
            "window.editorState().text.includes('from hocuspocus')", timeout=MS
        )
        await ws.evaluate("window.typeText(' and from ws')")
        await hocus.wait_for_function(
            "window.editorState().text.includes('and from ws')", timeout=MS
        )
        await hocus.evaluate("window.toggleBold()")
        await ws.wait_for_function("window.editorState().html.includes('<strong>')", timeout=MS)
        # Carets: each page shows the other's name.
        await hocus.wait_for_function("window.editorState().carets.includes('Wanda')", timeout=MS)
        await ws.wait_for_function("window.editorState().carets.includes('Hilda')", timeout=MS)
        await hocus.wait_for_function("window.editorState().unsynced === 0", timeout=MS)
        html = (await _state(hocus))["html"]
        assert html == (await _state(ws))["html"]
        assert "<strong>from hocuspocus and from ws</strong>" in html
        assert (await _state(hocus))["scope"] == "read-write"
    finally:
        await hocus.context.close()
        await ws.context.close()
    room = server.app[HUB].rooms.get("tip")
    await eventually(lambda: room is None or not room.members, what="both pages left")
    status, body = await call(session, server, "GET", "/api/docs/tip/content?format=json")
    assert status == 200
    assert "from hocuspocus and from ws" in str(body)


async def test_tiptap_with_tokens_read_write_and_read_only(
    config: Config, browser: Browser, tiptap_bundle: Path, session: aiohttp.ClientSession
) -> None:
    """With auth on, a Tiptap page with a read-write token edits (scope read-write, its
    edits stored under the token's author); one with a read-only token is told
    ``readonly``, sees those edits live, and what it types reaches nobody."""
    async with start_server(config.replace(auth_secret=SECRET)) as auth_server:
        await _read_write_and_read_only(auth_server, browser, tiptap_bundle, session)


async def _read_write_and_read_only(
    auth_server: Server, browser: Browser, tiptap_bundle: Path, session: aiohttp.ClientSession
) -> None:
    url = f"ws://127.0.0.1:{auth_server.port}/hocuspocus"
    writer = await tiptap_page(
        browser, tiptap_bundle, url=url, doc="guarded", name="Wren",
        token=token("guarded", user="wren"),
    )  # fmt: skip
    reader = await tiptap_page(
        browser, tiptap_bundle, url=url, doc="guarded", name="Rhea",
        token=token("guarded", Access.READ, user="rhea"),
    )  # fmt: skip
    try:
        await writer.wait_for_function("window.editorState().scope === 'read-write'", timeout=MS)
        await reader.wait_for_function("window.editorState().scope === 'readonly'", timeout=MS)
        await writer.evaluate("window.typeText('written')")
        await reader.wait_for_function("window.editorState().text === 'written'", timeout=MS)
        await writer.wait_for_function("window.editorState().unsynced === 0", timeout=MS)
        await reader.evaluate("window.typeText(' sneaky')")
        await reader.wait_for_function("window.editorState().unsynced > 0", timeout=MS)
        # A write of the writer's after the refused one arrives alone.
        await writer.evaluate("window.typeText('!')")
        await writer.wait_for_function("window.editorState().unsynced === 0", timeout=MS)
        assert (await _state(writer))["text"] == "written!"
    finally:
        await writer.context.close()
        await reader.context.close()
    admin = token()
    status, body = await call(
        session, auth_server, "GET", "/api/docs/guarded/history?raw=1", token=admin
    )
    assert status == 200
    assert {a for entry in body["entries"] for a in entry["authors"]} == {"wren"}


async def test_a_prosemirror_put_while_tiptap_types_in_the_same_paragraph(
    server: Server, browser: Browser, tiptap_bundle: Path, session: aiohttp.ClientSession
) -> None:
    """A ProseMirror PUT rewrites a paragraph while a real Tiptap page types into it
    (truly concurrently: the page's keystrokes are not on the server yet when the PUT
    computes its edit, as on a slow network): both the keystrokes and the PUT's change
    survive, and the page and the server end with the same document."""
    page = await tiptap_page(
        browser, tiptap_bundle, url=f"ws://127.0.0.1:{server.port}/ws", doc="put", protocol="ws"
    )
    try:
        await page.wait_for_function("window.editorState().synced", timeout=MS)
        await page.evaluate("window.typeText('Hello world')")

        async def stored(fragment: str) -> bool:
            status, doc = await call(
                session, server, "GET", "/api/docs/put/content?format=prosemirror"
            )
            return status == 200 and fragment in str(doc)

        await eventually(lambda: stored("Hello world"), what="typed text stored")
        await page.evaluate("window.tiptap.provider.disconnect()")
        await page.evaluate("window.typeText('!?')")  # in flight, from the server's view
        new = {
            "type": "doc",
            "content": [
                {"type": "paragraph", "content": [{"type": "text", "text": "Hello big world"}]}
            ],
        }
        status, _ = await call(session, server, "PUT", "/api/docs/put/content", new)
        assert status == 200
        await page.evaluate("window.tiptap.provider.connect()")
        await page.wait_for_function(
            "window.editorState().text === 'Hello big world!?'", timeout=MS
        )
        await eventually(lambda: stored("Hello big world!?"), what="the server has both")
    finally:
        await page.context.close()
