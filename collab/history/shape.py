"""The shape of a document: what kind each root is, and which root is the main one.

PURE: reads a ``pycrdt.Doc`` and returns names; never changes the document (reading a root
that does not exist would create it, so nothing here reads a root it was not given by
``doc.keys()``), never awaits.

``replay.root_kinds`` tells text, map, array and XML apart; rich-text editors need one more
distinction, because the encoding does not say whether an XML root is a ``Y.XmlFragment``
(Tiptap's ``default``, y-prosemirror's ``prosemirror``, BlockNote's ``document-store``) or a
``Y.XmlText`` (Lexical's ``root``). ``richtext.xml_kind`` tells them apart.

The *main root* is what every ``?root=`` parameter defaults to: collab's own ``content``
text when it has characters, else the first rich-text root, else any root with content,
else ``content`` (which reads as the empty text).
"""

from __future__ import annotations

from typing import Any

from pycrdt import Doc, Text

from collab.history.replay import TEXT_ROOT, NotFound, root_kinds
from collab.history.richtext import XML_FRAGMENT, XML_TEXT, xml_kind

__all__ = [
    "RICH_ROOTS",
    "XML_FRAGMENT",
    "XML_TEXT",
    "kinds_of",
    "main_root",
    "pick_root",
]

RICH_ROOTS = ("default", "prosemirror", "document-store", "root")
"""The root names rich-text editors use, in the order they are preferred as main root:
Tiptap, y-prosemirror, BlockNote, Lexical."""


def kinds_of(doc: Doc[Any]) -> dict[str, str]:
    """Every root's kind: ``root_kinds`` with ``"xml"`` split into ``"xml_fragment"`` and
    ``"xml_text"``."""
    kinds = root_kinds(doc)
    for name, kind in kinds.items():
        if kind == "xml":
            kinds[name] = xml_kind(doc.get(name, type=Text))
    return kinds


def main_root(doc: Doc[Any], kinds: dict[str, str]) -> str:
    """The root a request without ``?root=`` means (see the module docstring)."""
    if kinds.get(TEXT_ROOT) == "text" and len(doc.get(TEXT_ROOT, type=Text)) > 0:
        return TEXT_ROOT
    for name in RICH_ROOTS:
        if kinds.get(name) in (XML_FRAGMENT, XML_TEXT):
            return name
    for wanted in ((XML_FRAGMENT, XML_TEXT), ("text",), ("map", "array")):
        for name, kind in kinds.items():
            if kind in wanted:
                return name
    return TEXT_ROOT


def pick_root(doc: Doc[Any], root: str | None, where: str) -> tuple[str, str]:
    """The root a request reads, and its kind: ``root`` itself, or the main root when
    ``None``. ``content`` always exists (as the empty text) so that a new document reads.
    ``where`` names the document in the error ("version 5").

    Raises:
        NotFound: the version has no root named ``root``.
    """
    kinds = kinds_of(doc)
    name = main_root(doc, kinds) if root is None else root
    if name in kinds:
        return name, kinds[name]
    if name == TEXT_ROOT:
        return name, "text"
    raise NotFound(f"{where} has no root named {name!r}")
