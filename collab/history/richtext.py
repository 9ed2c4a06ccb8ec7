"""Rich-text roots as ProseMirror JSON, as an XML string, and the tree in between.

PURE: reads ``pycrdt`` XML types and returns JSON-ready values and strings; never changes a
document, never awaits.

The mapping is y-prosemirror's (``yXmlFragmentToProsemirrorJSON`` and the sync plugin),
which Tiptap and BlockNote use unchanged:

- a ``Y.XmlElement`` is a node: its name is the node type, its attributes the node's attrs
  (y-prosemirror never stores a ``null`` attr, so none is invented here);
- a ``Y.XmlText`` is a run of text nodes, one per formatting run; each formatting
  attribute is a mark whose type is the attribute's name and whose attrs are its value
  (``{"bold": {}}`` is a bold mark, ``{"link": {"href": ...}}`` a link). y-prosemirror
  stores a second mark of one type as ``type--hash``; the suffix is dropped here.

Two choices differ from y-prosemirror's own JSON function, in ProseMirror's favour: empty
``attrs`` are left out (as ``Node.toJSON`` does), and marks are sorted by type so the same
document always gives the same JSON. Numbers come back as JSON integers when whole (yrs
stores every number as a float).

The ``Tree`` (``Element`` and ``Runs``) is the lossless form restore and writes work on:
attribute values exactly as stored. ``lexical_json`` reads Lexical's ``Y.XmlText`` root,
whose shape is Lexical's own (block nodes are XmlTexts with a ``__type``, text properties
sit in a map embed before the text); it is a best-effort reading, see docs/rich-text.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pycrdt import Map, Text, XmlElement, XmlFragment, XmlText

__all__ = [
    "Element",
    "Runs",
    "Tree",
    "attributes_of",
    "attrs_json",
    "lexical_json",
    "mark_name",
    "marks_json",
    "plain",
    "prosemirror_json",
    "tree_of",
    "xml_kind",
    "xml_string",
]

XML_FRAGMENT = "xml_fragment"
XML_TEXT = "xml_text"


def xml_kind(root: Text) -> str:
    """Whether an XML root, read as a text, is a ``Y.XmlFragment`` or a ``Y.XmlText``.

    A fragment holds only XML nodes; an XmlText holds characters or embeds too, and
    Lexical's block nodes are XmlTexts carrying a ``__type`` attribute (so a Lexical root
    holding only empty paragraphs is still told apart).
    """
    nodes = [content for content, _ in root.diff()]
    if any(isinstance(node, str | Map) for node in nodes):
        return XML_TEXT
    if any(isinstance(node, XmlElement | XmlFragment) for node in nodes):
        return XML_FRAGMENT
    if any(isinstance(node, XmlText) and "__type" in node.attributes for node in nodes):
        return XML_TEXT
    return XML_FRAGMENT


@dataclass(slots=True)
class Runs:
    """The content of one ``Y.XmlText``: ``(text or embed, formatting or None)`` chunks."""

    chunks: list[tuple[Any, dict[str, Any] | None]] = field(default_factory=list)


@dataclass(slots=True)
class Element:
    """One ``Y.XmlElement``: its name, attributes as stored, and children."""

    tag: str
    attrs: dict[str, Any]
    children: list[Element | Runs] = field(default_factory=list)


Tree = list[Element | Runs]


def tree_of(parent: XmlFragment | XmlElement) -> Tree:
    """The children of a fragment or element, read into a ``Tree``."""
    out: Tree = []
    for child in parent.children:
        if isinstance(child, XmlText):
            out.append(Runs(list(child.diff())))
        elif isinstance(child, XmlElement):
            out.append(Element(str(child.tag), attributes_of(child), tree_of(child)))
    return out


def attributes_of(node: XmlElement | XmlText) -> dict[str, Any]:
    """A node's attributes as a dict (pycrdt's view of them is an iterator of pairs)."""
    return {str(key): value for key, value in list(node.attributes.__iter__())}


def plain(value: Any) -> Any:
    """A stored value as JSON: whole floats as integers (yrs keeps numbers as floats)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, Map):
        return {k: plain(value[k]) for k in value.keys()}
    if isinstance(value, bytes):
        return list(value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def mark_name(key: str) -> str:
    """The mark type of a formatting attribute (``comment--a1b2`` is a ``comment``)."""
    return key.split("--", 1)[0] if "--" in key else key


def attrs_json(attrs: dict[str, Any]) -> dict[str, Any]:
    """Node attributes as ProseMirror attrs, sorted by name."""
    return {key: plain(attrs[key]) for key in sorted(attrs) if attrs[key] is not None}


def marks_json(formatting: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Formatting attributes as ProseMirror marks, sorted by type."""
    marks: list[dict[str, Any]] = []
    for key in sorted(formatting or {}):
        value = (formatting or {})[key]
        if value is None or key == "ychange":  # unset, or y-prosemirror's own diff mark
            continue
        mark: dict[str, Any] = {"type": mark_name(key)}
        if isinstance(value, dict) and value:
            mark["attrs"] = plain(value)
        marks.append(mark)
    return marks


def _runs_json(runs: Runs) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for content, formatting in runs.chunks:
        if isinstance(content, str):
            if not content:
                continue
            node: dict[str, Any] = {"type": "text", "text": content}
        else:  # y-prosemirror never embeds; kept so nothing is lost
            node = {"type": "embed", "attrs": {"value": plain(content)}}
        marks = marks_json(formatting)
        if marks:
            node["marks"] = marks
        out.append(node)
    return out


def _node_json(element: Element) -> dict[str, Any]:
    node: dict[str, Any] = {"type": element.tag}
    attrs = attrs_json(element.attrs)
    if attrs:
        node["attrs"] = attrs
    content = _content_json(element.children)
    if content:
        node["content"] = content
    return node


def _content_json(tree: Tree) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for child in tree:
        if isinstance(child, Runs):
            out.extend(_runs_json(child))
        else:
            out.append(_node_json(child))
    return out


def prosemirror_json(tree: Tree) -> dict[str, Any]:
    """A fragment's tree as a ProseMirror document: ``{"type": "doc", "content": [...]}``."""
    return {"type": "doc", "content": _content_json(tree)}


# -- the XML string ----------------------------------------------------------------------


def _escape(text: str, quote: bool = False) -> str:
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace('"', "&quot;") if quote else text


def _tag(name: str) -> str:
    """An element, mark or attribute name as the XML string shows it: names come from
    clients, so markup characters are escaped and spaces, ``=`` and ``/`` (which would
    read as more attributes or a closing tag) become ``_``."""
    cleaned = "".join("_" if ch.isspace() or ch in "=/" else ch for ch in name)
    return _escape(cleaned, True).replace("'", "&#39;")


def _attr_text(value: Any) -> str:
    value = plain(value)
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _attributes(attrs: dict[str, Any]) -> str:
    return "".join(
        f' {_tag(key)}="{_escape(_attr_text(attrs[key]), True)}"'
        for key in sorted(attrs)
        if attrs[key] is not None
    )


def xml_string(tree: Tree) -> str:
    """A tree as XML, as yrs prints it (formatting as nested tags around the text) but
    escaped: text ``<bold>`` reads ``&lt;bold&gt;``, so it never looks like real bold."""
    parts: list[str] = []
    for child in tree:
        if isinstance(child, Element):
            tag = _tag(child.tag)
            parts.append(f"<{tag}{_attributes(child.attrs)}>{xml_string(child.children)}</{tag}>")
            continue
        for content, formatting in child.chunks:
            keys = sorted(k for k, v in (formatting or {}).items() if v is not None)
            opened = ""
            for key in keys:
                value = (formatting or {})[key]
                opened += f"<{_tag(key)}{_attributes(value) if isinstance(value, dict) else ''}>"
            body = _escape(content) if isinstance(content, str) else _escape(_attr_text(content))
            parts.append(opened + body + "".join(f"</{_tag(key)}>" for key in reversed(keys)))
    return "".join(parts)


# -- Lexical -----------------------------------------------------------------------------

_LEXICAL_FORMATS = ((1, "bold"), (2, "italic"), (4, "strike"), (8, "underline"), (16, "code"))


def lexical_json(root: Text) -> dict[str, Any]:
    """A Lexical ``Y.XmlText`` root as a ProseMirror-shaped document: each block (an
    XmlText with ``__type``) a node of that type, attributes without the ``__`` prefix
    the node's attrs, text with Lexical's format bits as marks; decorator nodes
    (``Y.XmlElement``) kept as nodes with their attributes. pycrdt cannot open an XmlText
    root as one, so the root is read as a ``Text``, which shows the same items."""
    return {"type": "doc", "content": _lexical_content(root)}


def _lexical_content(text: Text | XmlText) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    properties: dict[str, Any] = {}
    for content, _formatting in text.diff():
        if isinstance(content, Map):
            properties = {k: content[k] for k in content.keys()}
        elif isinstance(content, str):
            if not content:
                continue
            node: dict[str, Any] = {"type": "text", "text": content}
            bits = int(properties.get("__format") or 0)
            marks = [{"type": name} for bit, name in _LEXICAL_FORMATS if bits & bit]
            if marks:
                node["marks"] = marks
            out.append(node)
        elif isinstance(content, XmlText | XmlElement):
            attributes = attributes_of(content)
            kind = str(
                attributes.pop(
                    "__type", "element" if isinstance(content, XmlElement) else "paragraph"
                )
            )
            block: dict[str, Any] = {"type": kind}
            attrs = {k.removeprefix("__"): v for k, v in attributes.items()}
            if attrs:
                block["attrs"] = attrs_json(attrs)
            if isinstance(content, XmlText):
                children = _lexical_content(content)
                if children:
                    block["content"] = children
            out.append(block)
    return out
