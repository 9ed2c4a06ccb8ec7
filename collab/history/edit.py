"""Server-side edits of a document's text, as the REST API makes them.

PURE: takes the current document (as a Yjs update) and returns one Yjs update that makes
the change; never awaits, never runs SQL, never touches a socket. The hub applies the
update like any client's (relayed live, stored under the caller's name).

- ``replace_update`` turns the text root into a given text with a minimal character
  diff (``restore.restore_update``), so the parts that did not change keep their identity
  and concurrent edits there still merge.
- ``rich_update`` makes an XML fragment hold a ProseMirror document, as a tree edit
  (``xmledit``), so unchanged blocks keep their identity;
- ``patch_update`` applies ``insert`` and ``delete`` operations one after the other, each
  index counted against the text as the previous operations left it.

Indexes and lengths count Unicode code points (Python's ``len``; an embed counts one),
not the UTF-8 bytes pycrdt counts nor the UTF-16 units of JavaScript.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pycrdt import Doc, Text, XmlFragment

from collab.history.prosemirror import tree_from_prosemirror
from collab.history.replay import Conflict, replay
from collab.history.restore import restore_update
from collab.history.richtext import XML_FRAGMENT, XML_TEXT
from collab.history.shape import RICH_ROOTS, kinds_of, pick_root
from collab.history.textedit import code_point_offsets
from collab.history.xmledit import sync_fragment

__all__ = [
    "Delete",
    "Insert",
    "Operation",
    "patch_update",
    "replace_update",
    "rich_update",
    "text_update",
]

MAX_OPERATIONS = 1000


@dataclass(frozen=True, slots=True)
class Insert:
    """Insert ``text`` before code point ``index``."""

    index: int
    text: str


@dataclass(frozen=True, slots=True)
class Delete:
    """Delete ``length`` code points from ``index``."""

    index: int
    length: int


Operation = Insert | Delete


def text_update(text: str, root: str) -> bytes:
    """A new document whose text root ``root`` holds ``text``, as one update."""
    doc: Doc[Any] = Doc()
    doc.get(root, type=Text).insert(0, text)
    return doc.get_update()


def replace_update(state: bytes, root: str | None, text: str) -> bytes:
    """The change that makes text root ``root`` (default: the main root) of the document
    ``state`` hold ``text`` (empty: nothing to change).

    Raises:
        NotFound: the document has no root ``root``.
        Conflict: the root is not a text (a map, an array, XML).
    """
    current = replay(state, [])
    root = _check_text(current, root)
    target = replay(state, [])
    content = target.get(root, type=Text)
    content.clear()
    content.insert(0, text)
    return restore_update(current, target)


def rich_update(state: bytes, root: str | None, document: Any) -> bytes:
    """The change that makes the XML fragment ``root`` of ``state`` hold the ProseMirror
    ``document``, as a tree edit (``xmledit``: unchanged blocks keep their identity); empty
    when it already does. Without ``root``: the main root when it is a fragment, else a
    new Tiptap ``default`` root.

    Raises:
        BadRequest: ``document`` is no ProseMirror document (``prosemirror``).
        NotFound: the document has no root ``root``.
        Conflict: the root is not an XML fragment (text, a map, Lexical's XmlText root).
    """
    tree = tree_from_prosemirror(document)
    doc = replay(state, [])
    name, kind = pick_root(doc, root, "the document")
    if root is None and kind != XML_FRAGMENT:
        # No fragment is the main root: write Tiptap's, unless that name holds another kind.
        name = RICH_ROOTS[0]
        kind = kinds_of(doc).get(name, "empty")
    if kind not in (XML_FRAGMENT, "empty"):
        raise Conflict(
            f"root {name!r} is {'a ' + kind if kind != XML_TEXT else 'rich text (xml_text)'}: "
            "a ProseMirror body writes an XML fragment (give ?root= of one)"
        )
    updates: list[bytes] = []
    subscription = doc.observe(lambda event: updates.append(event.update))
    try:
        with doc.transaction():
            sync_fragment(doc.get(name, type=XmlFragment), tree)
    finally:
        doc.unobserve(subscription)
    return updates[0] if updates else b""


def patch_update(state: bytes, root: str | None, operations: Sequence[Operation]) -> bytes:
    """The change that applies ``operations`` to text root ``root`` (default: the main
    root) of ``state``.

    Raises:
        NotFound: the document has no root ``root``.
        Conflict: ``root`` is not a text, or an operation reaches past the end of the text
            as it is by then (the document changed since the caller read it).
    """
    doc = replay(state, [])
    root = _check_text(doc, root)
    content = doc.get(root, type=Text)
    chunks = content.diff()
    # Without embeds (the usual case) a mirror string gives offsets at C speed; with them,
    # offsets are recounted from the text itself.
    mirror: str | None = None
    if all(isinstance(chunk, str) for chunk, _ in chunks):
        mirror = "".join(chunk for chunk, _ in chunks)
    updates: list[bytes] = []
    subscription = doc.observe(lambda event: updates.append(event.update))
    try:
        with doc.transaction():
            for k, operation in enumerate(operations):
                size = len(mirror) if mirror is not None else len(code_point_offsets(content)) - 1
                if isinstance(operation, Insert):
                    if operation.index > size:
                        raise Conflict(
                            f"operation {k}: index {operation.index} is past the end of the "
                            f"text ({size} characters)"
                        )
                    if operation.text:
                        content.insert(_offset(content, mirror, operation.index), operation.text)
                        if mirror is not None:
                            i = operation.index
                            mirror = mirror[:i] + operation.text + mirror[i:]
                else:
                    end = operation.index + operation.length
                    if end > size:
                        raise Conflict(
                            f"operation {k}: deleting {operation.index}..{end} reaches past "
                            f"the end of the text ({size} characters)"
                        )
                    if operation.length:
                        start = _offset(content, mirror, operation.index)
                        del content[start : _offset(content, mirror, end)]
                        if mirror is not None:
                            mirror = mirror[: operation.index] + mirror[end:]
    finally:
        doc.unobserve(subscription)
    return updates[0] if updates else b""


def _check_text(doc: Doc[Any], root: str | None) -> str:
    name, kind = pick_root(doc, root, "the document")
    if kind in (XML_FRAGMENT, XML_TEXT):
        raise Conflict(
            f"root {name!r} is rich text ({kind}): write it as ProseMirror JSON "
            '(Content-Type: application/json, {"type": "doc", ...})'
        )
    if kind not in ("text", "empty"):
        raise Conflict(f"root {name!r} is a {kind}, not a text")
    return name


def _offset(text: Text, mirror: str | None, index: int) -> int:
    if mirror is not None:
        return len(mirror[:index].encode())
    return code_point_offsets(text)[index]
