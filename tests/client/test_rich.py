"""The browser with rich-text documents, in Debian's Chromium against a real server: the
history page shows each version formatted with every insertion and deletion in its
author's colour and restores from there, the list says what kind each document is, and
``/d/{room}`` shows a rich-text document read-only with a notice.

Documents come from two authors over the WebSocket, built with pycrdt in the exact shapes
Tiptap writes (``tests/richdoc.py``), and from an unmodified Tiptap 3 page."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
from pycrdt import Doc, XmlElement, XmlFragment, XmlText

from collab.auth import Access
from collab.config import Config
from collab.history.richtext import prosemirror_json, tree_of
from collab.sync.protocol import encode_update
from tests.browser import MS, tiptap_page
from tests.client.conftest import Shots
from tests.client.test_editor import editor_path, person, type_at, wait_state
from tests.conftest import Server, eventually, raw_client, start_server
from tests.http.api import SECRET, call, token
from tests.richdoc import add, el

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page, Route

# client/src/identity.ts: COLORS and authorColor, which history uses for every author.
COLORS = [
    "#2563eb", "#db2777", "#059669", "#d97706", "#7c3aed", "#dc2626",
    "#0891b2", "#65a30d", "#c026d3", "#ea580c", "#4f46e5", "#0d9488",
]  # fmt: skip
NOTICE = (
    "This document is rich text, written by another editor (Tiptap/ProseMirror); "
    "collab's editor shows it read-only."
)


def author_color(name: str) -> str:
    """The colour the pages give an author (identity.ts ``authorColor``)."""
    hashed = 0
    for char in name:
        hashed = (hashed * 31 + ord(char)) % 2**32
    return COLORS[hashed % len(COLORS)]


class Writer:
    """A local Tiptap-shaped document whose changes reach room ``room``, each under an
    author, one stored update per change."""

    def __init__(self, session: aiohttp.ClientSession, server: Server, room: str) -> None:
        self.session, self.server, self.room = session, server, room
        self.doc: Doc[Any] = Doc()
        self.fragment = self.doc.get("default", type=XmlFragment)
        self.seq = 0

    async def change(self, user: str, edit: Callable[[XmlFragment], None]) -> int:
        before = self.doc.get_state()
        with self.doc.transaction():
            edit(self.fragment)
        update = self.doc.get_update(before)
        async with raw_client(self.session, self.server.url(self.room, f"user={user}")) as client:
            await client.handshake()
            await client.ws.send_bytes(encode_update(update))
            target = self.seq + 1

            async def stored() -> bool:
                status, info = await call(
                    self.session, self.server, "GET", f"/api/docs/{self.room}/info"
                )
                return status == 200 and info["seq"] >= target

            await eventually(stored, 10, "update stored")
        self.seq += 1
        return self.seq


def _text(fragment: XmlFragment, block: int) -> XmlText:
    element = fragment.children[block]
    assert isinstance(element, XmlElement)
    text = element.children[0]
    assert isinstance(text, XmlText)
    return text


async def _styles(page: Page, selector: str) -> list[dict[str, str]]:
    """Each element's text, author and painted colours."""
    found: list[dict[str, str]] = await page.locator(selector).evaluate_all(
        """els => els.map(e => ({
            text: e.textContent, user: e.dataset.user, title: e.title,
            who: e.style.getPropertyValue('--who'),
            background: getComputedStyle(e).backgroundColor,
        }))"""
    )
    return found


async def _abort(route: Route) -> None:
    await route.abort()


def _rgb(color: str, alpha: float | None = None) -> str:
    r, g, b = (int(color[k : k + 2], 16) for k in (1, 3, 5))
    return f"rgb({r}, {g}, {b})" if alpha is None else f"rgba({r}, {g}, {b}, {alpha})"


async def test_history_of_rich_text_is_formatted_in_authors_colours_and_restores(
    server: Server, browser: Browser, session: aiohttp.ClientSession, shots: Shots
) -> None:
    """Ann writes a heading and two paragraphs, Bob makes a word bold, adds text and a list
    and deletes a paragraph: each version shows formatted, Bob's insertions and deletions
    in Bob's colour and Ann's in hers, and restoring Ann's version from the page makes it
    the current content exactly."""
    room = "spec/rich"
    writer = Writer(session, server, room)
    await writer.change(
        "ann",
        lambda f: add(
            f,
            [
                el("heading", "Title", level=2),
                el("paragraph", "Hello world"),
                el("paragraph", "Gone soon"),
            ],
        ),
    )

    def bob(f: XmlFragment) -> None:
        text = _text(f, 1)
        text.format(6, 11, {"bold": {}})
        text.insert(11, " and more")
        del f.children[2]
        add(f, [el("bulletList", el("listItem", el("paragraph", "a <b> item")))])

    await writer.change("bob", bob)
    ann_color, bob_color = author_color("ann"), author_color("bob")
    assert ann_color != bob_color
    async with person(browser, server.http, "Ada") as ada:
        await ada.goto(editor_path(room) + "/history")
        body = ada.locator("[data-testid=version-text][data-seq='2'][data-kind=rich]")
        await body.wait_for()
        await shots.take(ada, "newest")
        # Formatted: the server's HTML, with the text's own "<b>" as text.
        assert await body.locator("h2").inner_text() == "Title"
        assert await body.locator("p strong").inner_text() == "world"
        assert await body.locator("ul li").inner_text() == "a <b> item"
        assert await body.locator("b").count() == 0
        assert "This version is empty." not in await body.inner_text()
        inserted = await _styles(ada, "[data-testid=version-text] ins:not(.change-block)")
        assert [i["text"] for i in inserted] == [" and more", "a <b> item"]
        for ins in inserted:
            assert ins["user"] == "bob"
            assert ins["who"] == bob_color
            assert ins["background"] == _rgb(bob_color, 0.18)
            assert ins["title"] == "Added by bob (version 2)"
        deleted = await _styles(ada, "[data-testid=version-text] del:not(.change-block)")
        assert [(d["text"], d["who"], d["title"]) for d in deleted] == [
            ("Gone soon", bob_color, "Deleted by bob (version 2)")
        ]
        # Added and removed blocks carry a bar in the author's colour.
        bars = body.locator(":scope > .change-block")
        assert await bars.count() == 2
        for k in range(2):
            left = await bars.nth(k).evaluate("e => getComputedStyle(e).borderLeftColor")
            assert left == _rgb(bob_color)
        formatted = await _styles(ada, "[data-testid=version-text] [data-change=formatted]")
        assert [(f["text"], f["who"], f["title"]) for f in formatted] == [
            ("world", bob_color, "Formatted by bob (version 2)")
        ]

        # The slider: version 1 is Ann's, all of it hers.
        await ada.locator("[data-testid=slider]").fill("1")
        first = ada.locator("[data-testid=version-text][data-seq='1']")
        await first.wait_for()
        assert await first.locator("p").all_inner_texts() == ["Hello world", "Gone soon"]
        assert await first.locator("strong, del").count() == 0
        inserted = await _styles(ada, "[data-testid=version-text] ins:not(.change-block)")
        assert {(i["user"], i["who"]) for i in inserted} == {("ann", ann_color)}
        assert "ann" in await ada.inner_text("[data-testid=version-line]")
        await shots.take(ada, "first-version")

        # Restore it from the page: the document is version 1 again, as a new version.
        await ada.click("[data-testid=restore]")
        await ada.wait_for_selector("[data-testid=toast] >> text=Restored version 1")
        await ada.locator("[data-testid=version-text][data-seq='3']").wait_for()
        assert "(current)" in await ada.inner_text("[data-testid=version-line]")
        restored = ada.locator("[data-testid=version-text]")
        assert await restored.locator("ins:not(.change-block)").all_inner_texts() == ["Gone soon"]
        await shots.take(ada, "restored")
    status, now = await call(
        session, server, "GET", f"/api/docs/{room}/content?format=prosemirror"
    )
    assert status == 200
    status, then = await call(
        session, server, "GET", f"/api/docs/{room}/versions/1?format=prosemirror"
    )
    assert status == 200
    assert now == then


async def test_list_shows_kinds_and_a_tiptap_document_opens_in_a_rich_text_editor(
    server: Server,
    browser: Browser,
    tiptap_bundle: Path,
    session: aiohttp.ClientSession,
    shots: Shots,
) -> None:
    """A Tiptap page writes "spec", collab's editor writes "notes": the list says "Rich
    text" and "Text"; ``/d/spec`` opens a rich-text editor on Tiptap's fragment: each side
    sees the other's edits and caret, a reload that cannot ask the server still opens it
    there, and nothing writes a ``content`` root."""
    tiptap = await tiptap_page(
        browser, tiptap_bundle, url=f"ws://127.0.0.1:{server.port}/ws", doc="spec",
        protocol="ws", name="Tess", color="#059669",
    )  # fmt: skip
    try:
        await tiptap.wait_for_function("window.editorState().synced", timeout=MS)
        await tiptap.evaluate("window.typeText('Rich from Tiptap')")
        await tiptap.evaluate("window.toggleBold()")
        async with person(browser, server.http, "Ada") as ada:
            await ada.goto(editor_path("notes"))
            await wait_state(ada, "saved")
            await type_at(ada, "end", "# Plain notes")
            await wait_state(ada, "saved")

            async def bold_stored() -> bool:
                status, html = await call(
                    session, server, "GET", "/api/docs/spec/content?format=prosemirror"
                )
                return status == 200 and "bold" in str(html)

            await eventually(bold_stored, 10, "the bold text stored")
            await ada.goto("/")
            spec = ada.locator("[data-testid=doc-row][data-name=spec]")
            notes = ada.locator("[data-testid=doc-row][data-name=notes]")
            await ada.locator("[data-testid=doc-row][data-name=spec][data-kind=rich]").wait_for()
            await ada.locator("[data-testid=doc-row][data-name=notes][data-kind=text]").wait_for()
            assert await spec.locator("[data-testid=kind]").inner_text() == "Rich text"
            assert await notes.locator("[data-testid=kind]").inner_text() == "Text"
            await shots.take(ada, "list")

            await spec.click()
            await ada.wait_for_url("**/d/spec")
            editor = ada.locator("[data-testid=rich-editor] .ProseMirror")
            await editor.locator("p strong").wait_for()
            assert await editor.locator("p strong").inner_text() == "Rich from Tiptap"
            assert await ada.locator(".cm-content").count() == 0  # no Markdown editor
            assert await ada.locator("[data-testid=rich-notice]").count() == 0
            await wait_state(ada, "saved")
            # Ada types at the end, in the same paragraph; Tiptap's page gets it.
            await editor.click()
            await ada.keyboard.press("Control+End")
            await ada.keyboard.type(" and Ada", delay=5)
            await tiptap.wait_for_function(
                "window.editorState().text.includes('Rich from Tiptap and Ada')", timeout=MS
            )
            await tiptap.evaluate("window.typeText(' and Tess')")
            await editor.locator("text=and Tess").wait_for()
            # Carets, both ways, with names.
            await ada.locator(".collaboration-carets__label:has-text('Tess')").wait_for()
            await tiptap.wait_for_function(
                "window.editorState().carets.includes('Ada')", timeout=MS
            )
            await wait_state(ada, "saved")
            names = await ada.locator("[data-testid=person]").evaluate_all(
                "people => people.map(p => p.dataset.name)"
            )
            assert sorted(names) == ["Ada", "Tess"]
            await shots.take(ada, "rich-editor")
            # When the server cannot say what the document is, this browser remembers.
            await ada.route(re.compile(r"/content\?format=prosemirror"), _abort)
            await ada.reload()
            await editor.locator("text=and Tess").wait_for()
            assert await ada.locator(".cm-content").count() == 0
            await ada.unroute(re.compile(r"/content\?format=prosemirror"))
            await ada.click("[data-testid=history-link]")
            await ada.locator("[data-testid=version-text][data-kind=rich]").wait_for()
            await shots.take(ada, "history")
    finally:
        await tiptap.context.close()
    status, body = await call(session, server, "GET", "/api/docs/spec/content?format=json")
    assert status == 200
    assert set(body["content"]) == {"default"}
    status, html = await call(session, server, "GET", "/api/docs/spec/history?raw=1")
    assert {a for entry in html["entries"] for a in entry["authors"]} == {"Ada", "Tess"}


async def test_a_node_outside_the_schema_makes_the_page_read_only_and_is_kept(
    server: Server, browser: Browser, session: aiohttp.ClientSession, shots: Shots
) -> None:
    """A document holding a node the editor's schema does not know opens read-only with the
    notice; one that gets such a node while open turns read-only at once and then follows
    the document's changes; in both, the node and everything else is still there, byte for
    byte, after the page was open."""
    odd = Writer(session, server, "odd")
    await odd.change(
        "ann",
        lambda f: add(
            f, [el("paragraph", "Before"), ("callout", {"tone": "warn"}, [[("Careful", None)]])]
        ),
    )
    async with person(browser, server.http, "Ada") as ada:
        await ada.goto(editor_path("odd"))
        notice = ada.locator("[data-testid=rich-notice]")
        await notice.wait_for()
        said = await notice.inner_text()
        assert NOTICE in said
        assert "It holds a “callout” node" in said
        text = ada.locator("[data-testid=rich-text]")
        await text.locator("[data-type=callout]").wait_for()
        assert "Careful" in await text.inner_text()
        assert await ada.locator("[data-testid=rich-editor]").count() == 0
        await shots.take(ada, "read-only")

        live = Writer(session, server, "live")
        await live.change("ann", lambda f: add(f, [el("paragraph", "Fine so far")]))
        await ada.goto(editor_path("live"))
        editor = ada.locator("[data-testid=rich-editor] .ProseMirror")
        await editor.locator("text=Fine so far").wait_for()
        await wait_state(ada, "saved")
        await live.change(
            "bob",
            lambda f: add(f, [("paragraph", {"textAlign": "center"}, [[("Centred", None)]])]),
        )
        await notice.wait_for()
        assert "the attribute “textAlign” of a paragraph node" in await notice.inner_text()
        await text.locator("text=Centred").wait_for()
        await shots.take(ada, "turned-read-only")
        # Read-only, it still follows the document.
        await live.change("bob", lambda f: add(f, [el("paragraph", "Later")]))
        await text.locator("text=Later").wait_for()
    for writer in (odd, live):
        status, body = await call(
            session, server, "GET", f"/api/docs/{writer.room}/content?format=prosemirror"
        )
        assert status == 200
        local = writer.doc.get("default", type=XmlFragment)
        assert body == prosemirror_json(tree_of(local))
        status, info = await call(session, server, "GET", f"/api/docs/{writer.room}/info")
        assert info["seq"] == writer.seq  # the page wrote nothing


def _paragraphs(*texts: str) -> dict[str, Any]:
    return {
        "type": "doc",
        "content": [
            {"type": "paragraph", "content": [{"type": "text", "text": text}]} for text in texts
        ],
    }


async def test_a_reader_sees_rich_text_live_and_cannot_edit(
    config: Config, browser: Browser, session: aiohttp.ClientSession, shots: Shots
) -> None:
    """With auth on, a read-only token opens a rich-text document in the editor with typing
    off and the Read only badge, sees a writer's change live, and writes nothing."""
    async with start_server(config.replace(auth_secret=SECRET)) as server:
        writer = token(user="wren", name="Wren")
        reader = token(access=Access.READ, user="rhea", name="Rhea")
        status, _ = await call(
            session, server, "POST", "/api/docs", {"name": "memo"}, token=writer
        )
        assert status == 201
        path = "/api/docs/memo/content"
        status, _ = await call(session, server, "PUT", path, _paragraphs("Hello"), token=writer)
        assert status == 200
        async with person(browser, server.http, None) as rhea:
            await rhea.goto(editor_path("memo") + f"?token={reader}")
            editor = rhea.locator("[data-testid=rich-editor] .ProseMirror")
            await editor.locator("text=Hello").wait_for()
            await rhea.locator("[data-testid=read-only]").wait_for()
            assert await editor.get_attribute("contenteditable") == "false"
            await wait_state(rhea, "saved")
            await editor.click()
            await rhea.keyboard.type("vandalism")
            status, _ = await call(
                session, server, "PUT", path, _paragraphs("Hello", "Live"), token=writer
            )
            assert status == 200
            await editor.locator("text=Live").wait_for()
            assert "vandalism" not in await editor.inner_text()
            await shots.take(rhea, "reader")
        status, body = await call(
            session, server, "GET", "/api/docs/memo/history?raw=1", token=writer
        )
        assert status == 200
        assert {a for entry in body["entries"] for a in entry["authors"]} == {"Wren"}
