"""Rich-text documents on a real server: written by real WebSocket clients in the shape
Tiptap and y-prosemirror write them, two authors, every history and content endpoint read
over HTTP and checked against exact JSON and HTML."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from pycrdt import Doc, XmlElement, XmlFragment, XmlText

from collab.history.richtext import prosemirror_json, tree_of
from collab.sync.protocol import encode_update
from tests.conftest import Server, editor, eventually, raw_client
from tests.http.api import call
from tests.richdoc import add, el, node_rich, normalized

BOLD: dict[str, Any] = {"bold": {}}


class Writer:
    """One local document whose changes are sent to a room, each under an author."""

    def __init__(self, session: aiohttp.ClientSession, server: Server, room: str) -> None:
        self.session, self.server, self.room = session, server, room
        self.doc: Doc[Any] = Doc()
        self.fragment = self.doc.get("default", type=XmlFragment)
        self.seq = 0

    async def change(self, user: str, edit: Callable[[XmlFragment], None]) -> int:
        """Make ``edit`` in one transaction and send it as ``user``; wait until stored."""
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


async def get_html(session: aiohttp.ClientSession, server: Server, path: str) -> tuple[int, str]:
    """A GET answered with HTML: its status and text (the content type checked)."""
    async with session.get(server.http + path) as response:
        assert response.content_type == "text/html"
        return response.status, await response.text()


def first_text(fragment: XmlFragment, block: int) -> XmlText:
    element = fragment.children[block]
    assert isinstance(element, XmlElement)
    text = element.children[0]
    assert isinstance(text, XmlText)
    return text


@pytest.fixture
async def tiptap(session: aiohttp.ClientSession, server: Server) -> AsyncIterator[Writer]:
    """Room "tip": ann writes a heading and a paragraph (seq 1); bob makes "world" bold and
    adds a paragraph with a literal ``<b>`` (seq 2)."""
    writer = Writer(session, server, "tip")
    await writer.change(
        "ann", lambda f: add(f, [el("heading", "Title", level=2), el("paragraph", "Hello world")])
    )

    def bob(f: XmlFragment) -> None:
        first_text(f, 1).format(6, 11, BOLD)
        add(f, [el("paragraph", "Second <b> & more")])

    await writer.change("bob", bob)
    yield writer


V1 = {
    "type": "doc",
    "content": [
        {"type": "heading", "attrs": {"level": 2}, "content": [{"type": "text", "text": "Title"}]},
        {"type": "paragraph", "content": [{"type": "text", "text": "Hello world"}]},
    ],
}
V2 = {
    "type": "doc",
    "content": [
        V1["content"][0],
        {
            "type": "paragraph",
            "content": [
                {"type": "text", "text": "Hello "},
                {"type": "text", "text": "world", "marks": [{"type": "bold"}]},
            ],
        },
        {"type": "paragraph", "content": [{"type": "text", "text": "Second <b> & more"}]},
    ],
}
V2_HTML = "<h2>Title</h2><p>Hello <strong>world</strong></p><p>Second &lt;b&gt; &amp; more</p>"


async def test_versions_and_content_as_prosemirror_and_html(
    session: aiohttp.ClientSession, server: Server, tiptap: Writer
) -> None:
    """Without ?root= a Tiptap document reads its fragment: as ProseMirror JSON, HTML, and
    escaped XML text; the seq travels in a header."""

    async def get(path: str) -> tuple[int, Any]:
        return await call(session, server, "GET", path)

    assert await get("/api/docs/tip/versions/1?format=prosemirror") == (200, V1)
    assert await get("/api/docs/tip/versions/2?format=prosemirror&root=default") == (200, V2)
    assert await get("/api/docs/tip/content?format=prosemirror") == (200, V2)
    async with session.get(server.http + "/api/docs/tip/content?format=html") as response:
        assert response.status == 200
        assert response.content_type == "text/html"
        assert response.headers["X-Collab-Seq"] == "2"
        assert await response.text() == V2_HTML
    async with session.get(server.http + "/api/docs/tip/versions/1?format=html") as response:
        assert await response.text() == "<h2>Title</h2><p>Hello world</p>"
    assert await get("/api/docs/tip/content") == (
        200,
        '<heading level="2">Title</heading><paragraph>Hello <bold>world</bold></paragraph>'
        "<paragraph>Second &lt;b&gt; &amp; more</paragraph>",
    )
    status, version = await get("/api/docs/tip/versions/2")
    assert status == 200
    assert version["content"]["default"].startswith('<heading level="2">')


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/docs/tip/versions/2?format=text&root=nope"),
        ("GET", "/api/docs/tip/versions/2?format=prosemirror&root=nope"),
        ("GET", "/api/docs/tip/content?root=nope"),
        ("GET", "/api/docs/tip/content?format=html&root=nope"),
        ("GET", "/api/docs/tip/diff?from=1&root=nope"),
        ("GET", "/api/docs/tip/blame?root=nope"),
        ("GET", "/api/docs/tip/samples?root=nope"),
        ("PUT", "/api/docs/tip/content?root=nope"),
        ("PATCH", "/api/docs/tip/content?root=nope"),
    ],
)
async def test_unknown_root_is_404_everywhere(
    session: aiohttp.ClientSession, server: Server, tiptap: Writer, method: str, path: str
) -> None:
    """Every endpoint that takes ?root= answers 404 for a root the document does not have."""
    body = [{"op": "insert", "index": 0, "text": "x"}] if method == "PATCH" else None
    kwargs: dict[str, Any] = {"data": "x"} if method == "PUT" else {}
    status, answer = await call(session, server, method, path, body, **kwargs)
    assert status == 404
    assert "has no root named 'nope'" in answer["error"]


async def test_text_writes_to_rich_text_are_409(
    session: aiohttp.ClientSession, server: Server, tiptap: Writer
) -> None:
    """A text body for the fragment (named or the default) is refused, never written to
    another root."""
    for path in ("/api/docs/tip/content", "/api/docs/tip/content?root=default"):
        status, answer = await call(session, server, "PUT", path, data="plain")
        assert status == 409
        assert "rich text" in answer["error"]
    status, answer = await call(
        session,
        server,
        "PATCH",
        "/api/docs/tip/content",
        [{"op": "insert", "index": 0, "text": "x"}],
    )
    assert status == 409
    assert (await call(session, server, "GET", "/api/docs/tip/info"))[1]["seq"] == 2
    status, answer = await call(
        session, server, "GET", "/api/docs/tip/content?format=prosemirror&root=content"
    )
    assert status == 400
    assert "rich-text" in answer["error"]


def ychange(kind: str, user: str, seq: int, **extra: Any) -> dict[str, Any]:
    return {"type": kind, "user": user, "seqs": [seq, seq], **extra}


def marked(text: str, change: dict[str, Any], *marks: dict[str, Any]) -> dict[str, Any]:
    return {"type": "text", "text": text, "marks": [*marks, {"type": "ychange", "attrs": change}]}


async def test_diff_of_rich_text(
    session: aiohttp.ClientSession, server: Server, tiptap: Writer
) -> None:
    """The diff of a Tiptap document is the union document with bob's added paragraph and
    his bold marked, the counts and authors; as HTML too."""
    status, diff = await call(session, server, "GET", "/api/docs/tip/diff?from=1")
    assert status == 200
    assert (diff["from"]["seq"], diff["to"]["seq"]) == (1, 2)
    del diff["from"], diff["to"]
    added = ychange("added", "bob", 2)
    assert diff == {
        "root": "default",
        "inserted": 17,
        "deleted": 0,
        "formatted": 5,
        "authors": ["bob"],
        "doc": {
            "type": "doc",
            "content": [
                V1["content"][0],
                {
                    "type": "paragraph",
                    "content": [
                        {"type": "text", "text": "Hello "},
                        marked(
                            "world", ychange("formatted", "bob", 2, before=[]), {"type": "bold"}
                        ),
                    ],
                },
                {
                    "type": "paragraph",
                    "attrs": {"ychange": added},
                    "content": [marked("Second <b> & more", added)],
                },
            ],
        },
    }
    status, html = await get_html(
        session, server, "/api/docs/tip/diff?from=1&to=2&format=html&root=default"
    )
    assert (status, html) == (
        200,
        '<h2>Title</h2><p>Hello <span data-change="formatted" data-user="bob" data-seqs="2-2">'
        '<strong>world</strong></span></p><ins data-user="bob" data-seqs="2-2"><p>'
        '<ins data-user="bob" data-seqs="2-2">Second &lt;b&gt; &amp; more</ins></p></ins>',
    )


async def test_blame_of_rich_text(
    session: aiohttp.ClientSession, server: Server, tiptap: Writer
) -> None:
    """Blame marks every run with the author and seqs that wrote it; formatting a run
    someone else wrote does not change who wrote it."""
    status, blame = await call(session, server, "GET", "/api/docs/tip/blame")
    assert status == 200
    ann, bob = ychange("added", "ann", 1), ychange("added", "bob", 2)
    assert (blame["root"], blame["seq"], blame["authors"]) == ("default", 2, ["ann", "bob"])
    assert blame["doc"] == {
        "type": "doc",
        "content": [
            {
                "type": "heading",
                "attrs": {"level": 2, "ychange": ann},
                "content": [marked("Title", ann)],
            },
            {
                "type": "paragraph",
                "attrs": {"ychange": ann},
                "content": [marked("Hello ", ann), marked("world", ann, {"type": "bold"})],
            },
            {
                "type": "paragraph",
                "attrs": {"ychange": bob},
                "content": [marked("Second <b> & more", bob)],
            },
        ],
    }
    status, html = await get_html(session, server, "/api/docs/tip/blame?seq=1&format=html")
    ins = '<ins data-user="ann" data-seqs="1-1">'
    assert (status, html) == (
        200,
        f"{ins}<h2>{ins}Title</ins></h2></ins>{ins}<p>{ins}Hello world</ins></p></ins>",
    )
    status, error = await call(
        session, server, "GET", "/api/docs/tip/blame?root=content&format=html"
    )
    assert status == 400


async def test_restore_keeps_structure_and_undoes(
    session: aiohttp.ClientSession, server: Server, tiptap: Writer
) -> None:
    """Restoring version 1 brings back its structure and formatting exactly (bold gone,
    bob's paragraph gone) as one change; restoring the version just before that restore
    gives back version 2 exactly."""

    async def content() -> Any:
        return (await call(session, server, "GET", "/api/docs/tip/content?format=prosemirror"))[1]

    status, restored = await call(session, server, "POST", "/api/docs/tip/restore", {"seq": 1})
    assert (status, restored) == (200, {"restored": 1, "seq": 3, "changed": True})
    assert await content() == V1
    status, diff = await call(session, server, "GET", "/api/docs/tip/diff?from=2&to=3")
    assert (diff["inserted"], diff["deleted"], diff["formatted"]) == (0, 17, 5)
    status, undone = await call(session, server, "POST", "/api/docs/tip/restore", {"seq": 2})
    assert (status, undone) == (200, {"restored": 2, "seq": 4, "changed": True})
    assert await content() == V2
    status, again = await call(session, server, "POST", "/api/docs/tip/restore", {"seq": 4})
    assert again["changed"] is False


async def test_prosemirror_put_is_a_tree_edit(
    session: aiohttp.ClientSession, server: Server, tiptap: Writer
) -> None:
    """A ProseMirror body replaces the fragment: the diff shows only what differs (the
    heading and first paragraph kept), attributed to the writer."""
    new = {
        "type": "doc",
        "content": [
            V2["content"][0],
            V2["content"][1],
            {
                "type": "paragraph",
                "content": [
                    {"type": "text", "text": "Second & last", "marks": [{"type": "italic"}]}
                ],
            },
        ],
    }
    status, answer = await call(
        session,
        server,
        "PUT",
        "/api/docs/tip/content?root=default&user=cy",
        {"doc": new, "user": "cy"},
    )
    assert (status, answer) == (200, {"name": "tip", "seq": 3, "changed": True})
    assert (await call(session, server, "GET", "/api/docs/tip/content?format=prosemirror"))[
        1
    ] == new
    status, diff = await call(session, server, "GET", "/api/docs/tip/diff?from=2")
    assert diff["authors"] == ["cy"]
    assert diff["doc"]["content"][:2] == V2["content"][:2]  # kept blocks: no change marks
    assert (diff["inserted"], diff["deleted"]) == (6, 10)
    cy = ychange("added", "cy", 3)
    assert diff["doc"]["content"][2] == {
        "type": "paragraph",
        "content": [
            marked("Second ", ychange("formatted", "cy", 3, before=[]), {"type": "italic"}),
            marked("<b> & more", ychange("removed", "cy", 3)),
            marked("& last", cy, {"type": "italic"}),
        ],
    }
    status, again = await call(session, server, "PUT", "/api/docs/tip/content", new)  # bare
    assert (status, again) == (200, {"name": "tip", "seq": 3, "changed": False})


async def test_prosemirror_put_refusals(
    session: aiohttp.ClientSession, server: Server, tiptap: Writer
) -> None:
    """A ProseMirror body to a text root is 409, to a missing root 404, a malformed one
    400 naming the place; a new document gets Tiptap's ``default`` root."""
    doc = {
        "type": "doc",
        "content": [{"type": "paragraph", "content": [{"type": "text", "text": "x"}]}],
    }
    status, answer = await call(session, server, "PUT", "/api/docs/tip/content?root=content", doc)
    assert status == 409
    assert "writes an XML fragment" in answer["error"]
    status, answer = await call(session, server, "PUT", "/api/docs/tip/content?root=nope", doc)
    assert status == 404
    status, answer = await call(
        session, server, "PUT", "/api/docs/tip/content", {"type": "doc", "content": [{"type": 3}]}
    )
    assert (status, answer) == (
        400,
        {"error": "content.0.type: expected a name of 1 to 200 characters, no <>&\"'/= or spaces"},
    )
    status, answer = await call(
        session, server, "PUT", "/api/docs/tip/content", {"text": "x", "doc": doc}
    )
    assert status == 400
    assert (await call(session, server, "POST", "/api/docs", {"name": "fresh"}))[0] == 201
    assert (await call(session, server, "PUT", "/api/docs/fresh/content", doc))[0] == 200
    assert await call(session, server, "GET", "/api/docs/fresh/content?format=html") == (
        200,
        b"<p>x</p>",
    )


async def test_timeline_counts_rich_text_edits(
    session: aiohttp.ClientSession, server: Server, tiptap: Writer
) -> None:
    """Each author's entry counts the characters typed into the fragment's texts."""

    def bob_deletes(f: XmlFragment) -> None:
        del first_text(f, 0)[0:2]  # "Ti"

    await tiptap.change("bob", bob_deletes)
    status, page = await call(session, server, "GET", "/api/docs/tip/history?raw=1")
    assert status == 200
    counts = [(e["seq"], e["authors"], e["inserted"], e["deleted"]) for e in page["entries"]]
    assert counts == [(3, ["bob"], 0, 2), (2, ["bob"], 17, 0), (1, ["ann"], 16, 0)]


async def test_prosemirror_put_merges_with_a_concurrent_edit_of_the_same_paragraph(
    session: aiohttp.ClientSession, server: Server, tiptap: Writer
) -> None:
    """An editor types at the end of a paragraph it had before a PUT changed the same
    paragraph; its update reaches the server after the PUT: both survive, and a freshly
    synced editor reads the same document."""
    offline: Doc[Any] = Doc()
    offline.apply_update(tiptap.doc.get_update())
    before = offline.get_state()
    first_text(offline.get("default", type=XmlFragment), 1).insert(11, "!")
    typed = offline.get_update(before)

    new = {
        "type": "doc",
        "content": [
            V2["content"][0],
            {
                "type": "paragraph",
                "content": [
                    {"type": "text", "text": "Hello big "},
                    {"type": "text", "text": "world", "marks": [{"type": "bold"}]},
                ],
            },
            V2["content"][2],
        ],
    }
    assert (await call(session, server, "PUT", "/api/docs/tip/content", new))[0] == 200
    async with raw_client(session, server.url("tip", "user=ed")) as client:
        await client.handshake()
        await client.ws.send_bytes(encode_update(typed))

        async def merged() -> bool:
            status, doc = await call(
                session, server, "GET", "/api/docs/tip/content?format=prosemirror"
            )
            return status == 200 and doc["content"][1]["content"][-1]["text"] == "!"

        await eventually(merged, 10, "the typed character merged")
    status, doc = await call(session, server, "GET", "/api/docs/tip/content?format=prosemirror")
    assert doc["content"][1] == {
        "type": "paragraph",
        "content": [
            {"type": "text", "text": "Hello big "},
            {"type": "text", "text": "world", "marks": [{"type": "bold"}]},
            {"type": "text", "text": "!"},
        ],
    }
    async with editor(session, server.url("tip")) as live:
        fragment = live.doc.get("default", type=XmlFragment)
        assert prosemirror_json(tree_of(fragment)) == doc


async def test_a_document_y_prosemirror_wrote_and_reads_back(
    session: aiohttp.ClientSession, server: Server
) -> None:
    """A document made by the real y-prosemirror reads as y-prosemirror reads it; a
    ProseMirror PUT to it is read back by y-prosemirror exactly (numbers stay numbers)."""
    document = {
        "type": "doc",
        "content": [
            {"type": "heading", "attrs": {"level": 1}, "content": [{"type": "text", "text": "Y"}]},
            {
                "type": "paragraph",
                "content": [{"type": "text", "text": "pm", "marks": [{"type": "em"}]}],
            },
        ],
    }
    made = node_rich({"op": "from_json", "doc": document, "root": "prosemirror"})["update"]
    async with raw_client(session, server.url("yp", "user=yjs")) as client:
        await client.handshake()
        await client.ws.send_bytes(encode_update(base64.b64decode(made)))

        async def stored() -> bool:
            return (await call(session, server, "GET", "/api/docs/yp/info"))[0] == 200

        await eventually(stored, 10, "stored")
    theirs = node_rich({"op": "to_json", "update": made, "root": "prosemirror"})["doc"]
    assert await call(session, server, "GET", "/api/docs/yp/versions/1?format=prosemirror") == (
        200,
        normalized(theirs),
    )
    changed = {
        "type": "doc",
        "content": [
            {"type": "heading", "attrs": {"level": 3}, "content": [{"type": "text", "text": "Y"}]},
            document["content"][1],
            {"type": "horizontal_rule"},
        ],
    }
    assert (await call(session, server, "PUT", "/api/docs/yp/content?user=api", changed))[0] == 200
    status, state = await call(session, server, "GET", "/api/docs/yp/content?format=yjs")
    assert status == 200
    back = node_rich(
        {"op": "to_json", "update": base64.b64encode(state).decode(), "root": "prosemirror"}
    )["doc"]
    assert normalized(back) == changed
    assert back["content"][0]["attrs"] == {"level": 3}


async def test_blocknote_document_is_read_whole(
    session: aiohttp.ClientSession, server: Server
) -> None:
    """A BlockNote document (fragment ``document-store`` of blockGroup / blockContainer
    nodes) is the main root; its nodes outside the common set are kept in the HTML as
    divs with their type and attrs, never dropped."""
    writer = Writer(session, server, "bn")
    writer.fragment = writer.doc.get("document-store", type=XmlFragment)
    block = ("blockContainer", {"id": "b1"}, [el("paragraph", "Hi", textColor="default")])
    await writer.change("ann", lambda f: add(f, [("blockGroup", {}, [block])]))
    assert await get_html(session, server, "/api/docs/bn/content?format=html") == (
        200,
        '<div data-type="blockGroup"><div data-type="blockContainer" '
        'data-attrs="{&quot;id&quot;: &quot;b1&quot;}"><p>Hi</p></div></div>',
    )
    status, blame = await call(session, server, "GET", "/api/docs/bn/blame")
    assert (status, blame["root"], blame["authors"]) == (200, "document-store", ["ann"])
