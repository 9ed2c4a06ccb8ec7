"""A document's shape: the kind of each root, its main root, and unknown roots."""

from __future__ import annotations

from typing import Any

import pytest
from pycrdt import Doc, Map, Text, XmlElement, XmlFragment

from collab.errors import NotFound
from collab.history.shape import kinds_of, main_root, pick_root
from tests.richdoc import el, from_update, node_rich, rich_doc


def test_kinds() -> None:
    """Text, map, XML fragment and an emptied root are told apart."""
    doc = rich_doc([el("paragraph", "x")])
    doc["content"] = Text("hi")
    doc["meta"] = Map({"a": 1})
    doc["gone"] = Text("x")
    del doc.get("gone", type=Text)[0:1]
    assert kinds_of(doc) == {
        "content": "text",
        "default": "xml_fragment",
        "gone": "empty",
        "meta": "map",
    }


def test_lexical_root_is_xml_text() -> None:
    """Lexical's root (an XmlText, made by Yjs) is an xml_text root and the main root."""
    doc = from_update(node_rich({"op": "lexical"})["update"])
    assert kinds_of(doc) == {"root": "xml_text"}
    assert pick_root(doc, None, "v") == ("root", "xml_text")


@pytest.mark.parametrize(
    ("roots", "main"),
    [
        ({}, "content"),
        ({"content": ""}, "content"),
        ({"content": "", "default": None}, "default"),
        ({"content": "text", "default": None}, "content"),
        ({"document-store": None, "zz": None}, "document-store"),
        ({"prosemirror": None, "default": None}, "default"),
        ({"notes": None, "title": ""}, "notes"),
        ({"title": "t"}, "title"),
    ],
)
def test_main_root(roots: dict[str, str | None], main: str) -> None:
    """collab's own text when it has characters, else the first rich-text root (Tiptap's,
    y-prosemirror's, BlockNote's, Lexical's name first), else any root with content."""
    doc: Doc[Any] = Doc()
    for name, value in roots.items():
        if value is None:
            doc.get(name, type=XmlFragment).children.append(XmlElement("paragraph"))
        else:
            doc[name] = Text(value)
    assert main_root(doc, kinds_of(doc)) == main


def test_pick_root() -> None:
    """A named root is read as it is; an unknown one is NotFound, except ``content``."""
    doc = rich_doc([el("paragraph", "x")])
    assert pick_root(doc, None, "version 3") == ("default", "xml_fragment")
    assert pick_root(doc, "content", "version 3") == ("content", "text")
    with pytest.raises(NotFound, match="version 3 has no root named 'nope'"):
        pick_root(doc, "nope", "version 3")
    assert "nope" not in doc.keys()  # looking did not create it
