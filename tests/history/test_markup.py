"""ProseMirror JSON as HTML: the common nodes and marks, escaping, unknown nodes kept."""

from __future__ import annotations

from typing import Any

from collab.history.markup import html_of


def doc(*content: dict[str, Any]) -> dict[str, Any]:
    return {"type": "doc", "content": list(content)}


def text(value: str, *marks: dict[str, Any]) -> dict[str, Any]:
    node: dict[str, Any] = {"type": "text", "text": value}
    if marks:
        node["marks"] = list(marks)
    return node


def node(kind: str, *content: dict[str, Any], **attrs: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": kind}
    if attrs:
        out["attrs"] = attrs
    if content:
        out["content"] = list(content)
    return out


def test_common_nodes() -> None:
    """Paragraphs, headings by level, lists, blockquote, code block, rule and break."""
    assert html_of(
        doc(
            node("heading", text("T"), level=3),
            node("paragraph", text("a"), node("hardBreak"), text("b")),
            node("bulletList", node("listItem", node("paragraph", text("1")))),
            node("ordered_list", node("list_item", node("paragraph", text("2"))), start=3),
            node("orderedList", node("listItem", node("paragraph", text("3"))), start=1),
            node("blockquote", node("paragraph", text("q"))),
            node("codeBlock", text("x < y"), language="py"),
            node("horizontalRule"),
            node("heading", text("bad level"), level=9),
        )
    ) == (
        "<h3>T</h3><p>a<br>b</p><ul><li><p>1</p></li></ul>"
        '<ol start="3"><li><p>2</p></li></ol><ol><li><p>3</p></li></ol>'
        "<blockquote><p>q</p></blockquote>"
        '<pre><code class="language-py">x &lt; y</code></pre><hr><h1>bad level</h1>'
    )


def test_marks() -> None:
    """Bold, italic, strike, code, underline and links, nested in one text node."""
    marks = [{"type": t} for t in ("bold", "italic", "strike", "code", "underline")]
    link = {"type": "link", "attrs": {"href": 'https://x.org/?a=1&b="2"'}}
    assert html_of(doc(node("paragraph", text("x", *marks, link)))) == (
        '<p><strong><em><s><code><u><a href="https://x.org/?a=1&amp;b=&quot;2&quot;">x'
        "</a></u></code></s></em></strong></p>"
    )


def test_hostile_text_and_links_are_inert() -> None:
    """Text is escaped; a javascript: link loses its href; names never become tags."""
    assert html_of(
        doc(
            node(
                "paragraph",
                text(
                    "<script>alert(1)</script>",
                    {"type": "link", "attrs": {"href": " JavaScript:x"}},
                ),
                text("r", {"type": "link", "attrs": {"href": "/relative/a:b"}}),
            ),
            node("<img onerror=x>", text("y")),
        )
    ) == (
        "<p><a>&lt;script&gt;alert(1)&lt;/script&gt;</a>"
        '<a href="/relative/a:b">r</a></p>'
        '<div data-type="&lt;img onerror=x&gt;">y</div>'
    )


def test_unknown_nodes_and_marks_are_kept() -> None:
    """A node outside the known set is a div (a span inside a text block) with its type
    and attrs; an unknown mark a span."""
    assert html_of(
        doc(
            node("callout", node("paragraph", text("c")), tone="warn"),
            node(
                "paragraph",
                node("mention", id="u1", label="Ann"),
                text("!", {"type": "highlight", "attrs": {"color": "#ff0"}}),
            ),
        )
    ) == (
        '<div data-type="callout" data-attrs="{&quot;tone&quot;: &quot;warn&quot;}"><p>c</p></div>'
        '<p><span data-type="mention" data-attrs="{&quot;id&quot;: &quot;u1&quot;, '
        '&quot;label&quot;: &quot;Ann&quot;}"></span>'
        '<span data-mark="highlight" data-attrs="{&quot;color&quot;: &quot;#ff0&quot;}">'
        "!</span></p>"
    )


def test_changes_become_ins_and_del() -> None:
    """A ychange mark is ins or del outside the other marks; on a node it wraps the node;
    a formatting change is a span saying so."""
    added = {"type": "added", "user": "ann", "seqs": [3, 5]}
    removed = {"type": "removed", "user": "bob", "seqs": [6, 6]}
    formatted = {"type": "formatted", "user": "bob", "seqs": [7, 7]}
    assert html_of(
        doc(
            node(
                "paragraph",
                text("new", {"type": "bold"}, {"type": "ychange", "attrs": added}),
                text("old", {"type": "ychange", "attrs": removed}),
                text("b", {"type": "bold"}, {"type": "ychange", "attrs": formatted}),
            ),
            node("paragraph", text("gone"), ychange=removed),
        )
    ) == (
        '<p><ins data-user="ann" data-seqs="3-5"><strong>new</strong></ins>'
        '<del data-user="bob" data-seqs="6-6">old</del>'
        '<span data-change="formatted" data-user="bob" data-seqs="7-7">'
        "<strong>b</strong></span></p>"
        '<del data-user="bob" data-seqs="6-6"><p>gone</p></del>'
    )


def test_malformed_input_is_skipped() -> None:
    """Non-dict nodes and non-list content never raise."""
    assert (
        html_of({"type": "doc", "content": [1, "x", {"type": "paragraph", "content": 5}]})
        == "<p></p>"
    )
    assert html_of({"type": "doc"}) == ""


def test_nesting_past_the_bound_is_marked() -> None:
    """Content nested deeper than any editor's is cut with a visible marker, not silently."""
    node: dict[str, Any] = {"type": "paragraph", "content": [{"type": "text", "text": "deep"}]}
    for _ in range(250):
        node = {"type": "blockquote", "content": [node]}
    html = html_of(doc(node))
    assert html.count("<blockquote>") == 200
    assert '<div data-truncated="nested deeper than 200"></div>' in html
    assert "<p>deep</p>" not in html
