"""Rich-text roots read as ProseMirror JSON and as escaped XML, from the shapes editors write."""

from __future__ import annotations

from typing import Any

from pycrdt import Doc, Text, XmlElement, XmlFragment

from collab.history.richtext import (
    XML_FRAGMENT,
    XML_TEXT,
    lexical_json,
    mark_name,
    plain,
    prosemirror_json,
    tree_of,
    xml_kind,
    xml_string,
)
from tests.richdoc import el, from_update, node_rich, normalized, rich_doc

BOLD: dict[str, Any] = {"bold": {}}


def sample() -> Doc[Any]:
    return rich_doc(
        [
            el("heading", "Title", level=2),
            el(
                "paragraph",
                [
                    ("a <b> & ", None),
                    ("bold", BOLD),
                    (" link", {"link": {"href": "https://x.org/?a=1&b=2"}, "italic": {}}),
                ],
                ("hardBreak", {}, []),
                "after",
            ),
            el("bulletList", el("listItem", el("paragraph", "one"))),
        ]
    )


def pm(doc: Doc[Any], root: str = "default") -> dict[str, Any]:
    return prosemirror_json(tree_of(doc.get(root, type=XmlFragment)))


def test_prosemirror_json_follows_y_prosemirror() -> None:
    """Elements are nodes with their attributes as attrs, formatting attributes are marks
    (sorted, empty attrs left out), whole numbers are integers."""
    assert pm(sample()) == {
        "type": "doc",
        "content": [
            {
                "type": "heading",
                "attrs": {"level": 2},
                "content": [{"type": "text", "text": "Title"}],
            },
            {
                "type": "paragraph",
                "content": [
                    {"type": "text", "text": "a <b> & "},
                    {"type": "text", "text": "bold", "marks": [{"type": "bold"}]},
                    {
                        "type": "text",
                        "text": " link",
                        "marks": [
                            {"type": "italic"},
                            {"type": "link", "attrs": {"href": "https://x.org/?a=1&b=2"}},
                        ],
                    },
                    {"type": "hardBreak"},
                    {"type": "text", "text": "after"},
                ],
            },
            {
                "type": "bulletList",
                "content": [
                    {
                        "type": "listItem",
                        "content": [
                            {"type": "paragraph", "content": [{"type": "text", "text": "one"}]}
                        ],
                    }
                ],
            },
        ],
    }


def test_overlapping_marks_and_ychange() -> None:
    """A second mark of one type (``comment--hash``) reads as that type; y-prosemirror's own
    ``ychange`` attribute and unset (null) formatting are no marks."""
    doc = rich_doc(
        [
            el(
                "paragraph",
                [("x", {"comment--ab12": {"id": 7}, "ychange": {"user": "u"}, "em": None})],
            )
        ]
    )
    assert pm(doc)["content"][0]["content"] == [
        {"type": "text", "text": "x", "marks": [{"type": "comment", "attrs": {"id": 7}}]}
    ]
    assert mark_name("comment--ab12") == "comment"
    assert mark_name("bold") == "bold"


def test_xml_string_escapes_text_and_attributes() -> None:
    """Literal ``<bold>`` text and real bold are different strings; ``&``, ``<`` and quotes
    in attribute values are escaped."""
    literal = rich_doc([el("paragraph", "<bold>x</bold> & y")])
    real = rich_doc([el("paragraph", [("x", BOLD), (" & y", None)])])
    assert xml_string(tree_of(literal.get("default", type=XmlFragment))) == (
        "<paragraph>&lt;bold&gt;x&lt;/bold&gt; &amp; y</paragraph>"
    )
    assert xml_string(tree_of(real.get("default", type=XmlFragment))) == (
        "<paragraph><bold>x</bold> &amp; y</paragraph>"
    )
    attrs = rich_doc([el("image", src='a"<&>', width=3)])
    assert xml_string(tree_of(attrs.get("default", type=XmlFragment))) == (
        '<image src="a&quot;&lt;&amp;&gt;" width="3"></image>'
    )
    link = rich_doc([el("paragraph", [("l", {"link": {"href": "?a&b"}})])])
    assert xml_string(tree_of(link.get("default", type=XmlFragment))) == (
        '<paragraph><link href="?a&amp;b">l</link></paragraph>'
    )


def test_plain_numbers() -> None:
    """Whole floats read as integers, others stay floats, containers are walked."""
    assert plain({"a": [2.0, 2.5, True, None, "s"]}) == {"a": [2, 2.5, True, None, "s"]}


def lexical() -> Doc[Any]:
    """A Lexical document made by Yjs itself (pycrdt cannot make an XmlText root)."""
    return from_update(node_rich({"op": "lexical"})["update"])


def test_xml_kind_tells_fragments_from_lexical_roots() -> None:
    """A fragment of elements is an XmlFragment root, Lexical's root an XmlText root."""
    assert xml_kind(sample().get("default", type=Text)) == XML_FRAGMENT
    assert xml_kind(lexical().get("root", type=Text)) == XML_TEXT


def test_lexical_root_reads_as_blocks() -> None:
    """Lexical blocks are nodes of their ``__type``, text format bits are marks."""
    doc = lexical()
    assert lexical_json(doc.get("root", type=Text)) == {
        "type": "doc",
        "content": [
            {
                "type": "paragraph",
                "attrs": {"format": 0},
                "content": [{"type": "text", "text": "Hello", "marks": [{"type": "bold"}]}],
            }
        ],
    }


def test_tree_keeps_attributes_exactly() -> None:
    """The tree holds attribute values as stored, for restore and writes."""
    doc = rich_doc([el("heading", "T", level=1)])
    tree = tree_of(doc.get("default", type=XmlFragment))
    assert len(tree) == 1
    element = tree[0]
    assert isinstance(element, type(tree[0])) and not isinstance(element, XmlElement)
    assert getattr(element, "attrs") == {"level": 1.0}


def test_json_matches_y_prosemirror() -> None:
    """A document y-prosemirror wrote reads as y-prosemirror itself reads it (normalized),
    and nothing is lost: the same JSON written by y-prosemirror again gives the same."""
    document = {
        "type": "doc",
        "content": [
            {
                "type": "heading",
                "attrs": {"level": 2},
                "content": [{"type": "text", "text": "T<"}],
            },
            {
                "type": "paragraph",
                "content": [
                    {"type": "text", "text": "plain & "},
                    {
                        "type": "text",
                        "text": "bold link",
                        "marks": [
                            {"type": "strong"},
                            {"type": "link", "attrs": {"href": "http://x", "title": None}},
                        ],
                    },
                    {"type": "hard_break"},
                    {"type": "text", "text": "é", "marks": [{"type": "em"}]},
                ],
            },
            {
                "type": "bullet_list",
                "content": [
                    {
                        "type": "list_item",
                        "content": [
                            {"type": "paragraph", "content": [{"type": "text", "text": "1"}]}
                        ],
                    }
                ],
            },
            {"type": "horizontal_rule"},
            {"type": "code_block", "content": [{"type": "text", "text": "x < y"}]},
        ],
    }
    update = node_rich({"op": "from_json", "doc": document, "root": "prosemirror"})["update"]
    theirs = node_rich({"op": "to_json", "update": update, "root": "prosemirror"})["doc"]
    ours = pm(from_update(update), "prosemirror")
    assert ours == normalized(theirs)
    assert ours["content"][0]["attrs"] == {"level": 2}


def test_xml_string_names_cannot_make_markup() -> None:
    """Element, attribute and mark names a client chose cannot open or close tags or add
    attributes in the XML string."""
    doc = rich_doc([el('p onclick="x"><script', [("t", {"b></b": {}})], **{"a b=": "v"})])
    assert xml_string(tree_of(doc.get("default", type=XmlFragment))) == (
        '<p_onclick_&quot;x&quot;&gt;&lt;script a_b_="v"><b&gt;&lt;_b>t</b&gt;&lt;_b>'
        "</p_onclick_&quot;x&quot;&gt;&lt;script>"
    )
