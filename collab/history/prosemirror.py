"""A ProseMirror JSON document from a client, checked and turned into a ``richtext.Tree``.

PURE: JSON-ready values in, a tree out; never touches a document, never awaits.

The body is hostile: every field is checked before anything reaches yrs (types, names,
numbers, valid Unicode, nesting within the validator's bounds), with an error naming the
place (``content.2.marks.0.type``). The mapping is y-prosemirror's, the inverse
of ``richtext.prosemirror_json``: a node becomes an element named by its type with its
attrs as attributes (``null`` attrs are not stored, as y-prosemirror does not), consecutive
text nodes become one XmlText whose formatting attributes are their marks
(``{"type": "bold"}`` is ``{"bold": {}}``). Whole numbers are stored as floats, as Yjs
stores every JavaScript number (an integer would reach browsers as a BigInt). A diff's
``ychange`` marks and attrs are dropped: they describe a change, not content.
"""

from __future__ import annotations

from typing import Any

from collab.errors import BadRequest
from collab.history.richtext import Element, Runs, Tree
from collab.sync.content import MAX_DEPTH as _ANY_DEPTH

__all__ = ["MAX_DEPTH", "tree_from_prosemirror"]

MAX_DEPTH = 100
"""How deep nodes may nest: deeper than any editor's schema, a bound on recursion."""
# Attribute values become Yjs Any values, which the room's validator refuses nested past
# its own bound: the same bound here, so a body is refused before any tree edit is made.
_MAX_NAME = 200
_BAD_NAME = set("<>&\"'/= \t\r\n")


def _utf8(value: str) -> bool:
    """Whether ``value`` encodes as UTF-8: a lone surrogate does not, and pycrdt panics on
    it (a ``BaseException``); JSON can carry one as ``\\ud800``."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _name(value: Any, where: str) -> str:
    if (
        not isinstance(value, str)
        or not 0 < len(value) <= _MAX_NAME
        or any(ch in _BAD_NAME or ord(ch) < 32 for ch in value)
        or not _utf8(value)
    ):
        raise BadRequest(
            f"{where}: expected a name of 1 to {_MAX_NAME} characters, no <>&\"'/= or spaces"
        )
    return value


def _value(value: Any, where: str, depth: int) -> Any:
    """An attribute value, whole numbers as floats."""
    if depth > _ANY_DEPTH:
        raise BadRequest(f"{where}: nested more than {_ANY_DEPTH} deep")
    if isinstance(value, str):
        if not _utf8(value):
            raise BadRequest(f"{where}: not valid Unicode (a lone surrogate)")
        return value
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        if value != value or value in (float("inf"), float("-inf")) or abs(value) > 2**53:
            raise BadRequest(f"{where}: a number out of range")
        return float(value)
    if isinstance(value, list):
        return [_value(item, f"{where}.{k}", depth + 1) for k, item in enumerate(value)]
    if isinstance(value, dict):
        return {_key(k, where): _value(v, f"{where}.{k}", depth + 1) for k, v in value.items()}
    raise BadRequest(f"{where}: not a JSON value")


def _key(value: Any, where: str) -> str:
    return _name(value, f"{where}: an attribute name")


def _attrs(node: dict[str, Any], where: str) -> dict[str, Any]:
    raw = node.get("attrs", {})
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise BadRequest(f"{where}.attrs: expected an object")
    return {
        _key(key, f"{where}.attrs"): _value(value, f"{where}.attrs.{key}", 0)
        for key, value in raw.items()
        if value is not None and key != "ychange"
    }


def _marks(node: dict[str, Any], where: str) -> dict[str, Any] | None:
    raw = node.get("marks", [])
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise BadRequest(f"{where}.marks: expected a list")
    formatting: dict[str, Any] = {}
    for k, mark in enumerate(raw):
        place = f"{where}.marks.{k}"
        if not isinstance(mark, dict):
            raise BadRequest(f"{place}: expected an object")
        kind = _name(mark.get("type"), f"{place}.type")
        if kind != "ychange":
            formatting[kind] = _attrs(mark, place)
    return formatting or None


def _content(node: dict[str, Any], where: str, depth: int) -> Tree:
    if depth > MAX_DEPTH:
        raise BadRequest(f"{where}: nested more than {MAX_DEPTH} deep")
    raw = node.get("content", [])
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise BadRequest(f"{where}.content: expected a list")
    tree: Tree = []
    for k, child in enumerate(raw):
        place = f"{where}.content.{k}" if where else f"content.{k}"
        if not isinstance(child, dict):
            raise BadRequest(f"{place}: expected a node object")
        kind = _name(child.get("type"), f"{place}.type")
        if kind == "text":
            text = child.get("text")
            if not isinstance(text, str) or not _utf8(text):
                raise BadRequest(f"{place}.text: expected a string of valid Unicode")
            if not text:
                continue
            chunk = (text, _marks(child, place))
            if tree and isinstance(tree[-1], Runs):
                tree[-1].chunks.append(chunk)
            else:
                tree.append(Runs([chunk]))
            continue
        tree.append(Element(kind, _attrs(child, place), _content(child, place, depth + 1)))
    return tree


def tree_from_prosemirror(document: Any) -> Tree:
    """The children of a ProseMirror ``{"type": "doc", "content": [...]}`` as a tree.

    Raises:
        BadRequest: not a ProseMirror document (the message names the place).
    """
    if not isinstance(document, dict) or document.get("type") != "doc":
        raise BadRequest('expected a ProseMirror document: {"type": "doc", "content": [...]}')
    return _content(document, "", 0)
