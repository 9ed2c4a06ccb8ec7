"""A client's ProseMirror JSON: checked field by field, mapped as y-prosemirror maps it."""

from __future__ import annotations

from typing import Any

import pytest
from pycrdt import Doc, XmlFragment

from collab.errors import BadRequest
from collab.history.edit import rich_update
from collab.history.prosemirror import tree_from_prosemirror
from collab.history.richtext import Element, Runs, prosemirror_json, tree_of
from collab.history.xmledit import sync_fragment
from collab.sync.validator import check_update

DOC = {
    "type": "doc",
    "content": [
        {
            "type": "heading",
            "attrs": {"level": 2, "id": None},
            "content": [{"type": "text", "text": "T"}],
        },
        {
            "type": "paragraph",
            "content": [
                {"type": "text", "text": "a "},
                {
                    "type": "text",
                    "text": "b",
                    "marks": [{"type": "bold"}, {"type": "link", "attrs": {"href": "h"}}],
                },
                {"type": "hardBreak"},
                {
                    "type": "text",
                    "text": "c",
                    "marks": [{"type": "ychange", "attrs": {"type": "added"}}],
                },
            ],
        },
    ],
}


def test_mapping() -> None:
    """Nodes are elements (null attrs dropped, numbers as floats), adjacent text nodes one
    XmlText with marks as formatting, diff marks dropped."""
    assert tree_from_prosemirror(DOC) == [
        Element("heading", {"level": 2.0}, [Runs([("T", None)])]),
        Element(
            "paragraph",
            {},
            [
                Runs([("a ", None), ("b", {"bold": {}, "link": {"href": "h"}})]),
                Element("hardBreak", {}, []),
                Runs([("c", None)]),
            ],
        ),
    ]


def test_round_trip_through_a_document() -> None:
    """Written into a fragment and read back, the document is what was sent (less its
    null attrs and diff marks)."""
    doc: Doc[Any] = Doc()
    fragment = doc.get("default", type=XmlFragment)
    with doc.transaction():
        sync_fragment(fragment, tree_from_prosemirror(DOC))
    back = prosemirror_json(tree_of(fragment))
    assert back["content"][0] == {
        "type": "heading",
        "attrs": {"level": 2},
        "content": [{"type": "text", "text": "T"}],
    }
    assert back["content"][1]["content"][-1] == {"type": "text", "text": "c"}


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "expected a ProseMirror document"),
        ({"type": "paragraph"}, "expected a ProseMirror document"),
        ({"type": "doc", "content": {}}, "content: expected a list"),
        ({"type": "doc", "content": [1]}, "content.0: expected a node object"),
        ({"type": "doc", "content": [{"type": "<p>"}]}, "content.0.type: expected a name"),
        (
            {"type": "doc", "content": [{"type": "p", "attrs": []}]},
            "content.0.attrs: expected an object",
        ),
        ({"type": "doc", "content": [{"type": "p", "attrs": {"a b": 1}}]}, "an attribute name"),
        (
            {"type": "doc", "content": [{"type": "text", "text": 5}]},
            "content.0.text: expected a string",
        ),
        (
            {"type": "doc", "content": [{"type": "text", "text": "x", "marks": [{}]}]},
            "marks.0.type",
        ),
        ({"type": "doc", "content": [{"type": "p", "attrs": {"n": 2**60}}]}, "out of range"),
    ],
)
def test_bad_documents(document: Any, message: str) -> None:
    """Anything that is not a ProseMirror document is a BadRequest naming the place."""
    with pytest.raises(BadRequest, match=message.replace(".", r"\.")):
        tree_from_prosemirror(document)


def test_depth_is_bounded() -> None:
    """Nesting past MAX_DEPTH is refused before any recursion limit is reached."""
    node: dict[str, Any] = {"type": "p"}
    for _ in range(150):
        node = {"type": "blockquote", "content": [node]}
    with pytest.raises(BadRequest, match="nested more than 100 deep"):
        tree_from_prosemirror({"type": "doc", "content": [node]})


def _with_attr(value: Any) -> dict[str, Any]:
    return {
        "type": "doc",
        "content": [{"type": "paragraph", "attrs": {"x": value}, "content": []}],
    }


def test_attribute_nesting_has_the_validators_bound() -> None:
    """An attribute value nested as deep as the room's validator allows makes an update
    the validator accepts; one level more is refused here, before any tree edit (it used
    to pass here and be refused by the room)."""
    value: Any = 1
    for _ in range(64):
        value = [value]
    check_update(rich_update(Doc().get_update(), None, _with_attr(value)))
    with pytest.raises(BadRequest, match="nested more than 64 deep"):
        tree_from_prosemirror(_with_attr([value]))


@pytest.mark.parametrize(
    "document",
    [
        _with_attr("\ud800"),
        {
            "type": "doc",
            "content": [{"type": "paragraph", "content": [{"type": "text", "text": "a\udc00"}]}],
        },
        {"type": "doc", "content": [{"type": "p\ud800"}]},
    ],
    ids=["attribute", "text", "name"],
)
def test_lone_surrogates_are_refused_before_pycrdt(document: Any) -> None:
    """A lone surrogate (JSON may carry one) would panic pycrdt: a BadRequest instead."""
    with pytest.raises(BadRequest):
        tree_from_prosemirror(document)
