"""Making an XML fragment hold a given tree with as small an edit as can be found.

PURE: changes a ``pycrdt`` fragment in place (inside the caller's transaction, whose
update the caller captures) and never awaits.

Used by restore (the target is a past version's tree) and by ``PUT .../content`` with a
ProseMirror body (``prosemirror.py`` turns it into a tree). Unchanged nodes keep their
identity, so an editor's cursor stays put and concurrent edits there still merge:

- the children of a node are aligned by their whole content (difflib's matcher on a
  canonical key of each subtree), so an inserted or deleted block leaves every other block
  as it is;
- in a stretch that differs, a node is kept and edited in place when the target has a node
  of the same type there (attributes set or removed one by one, children aligned the same
  way); text is edited as restore edits text (``textedit.restore_chunks``: a character
  diff, then formatting set where it differs);
- anything else is deleted and inserted new, formatting and attributes exactly as the
  target's.
"""

from __future__ import annotations

import json
from difflib import SequenceMatcher
from typing import Any

from pycrdt import XmlElement, XmlFragment, XmlText

from collab.history.richtext import Element, Runs, Tree, attributes_of, plain, tree_of
from collab.history.textedit import restore_chunks

__all__ = ["sync_fragment"]


def _key(node: Element | Runs) -> str:
    """The same string for two subtrees exactly when they read the same."""
    return json.dumps(_canon(node), sort_keys=True, ensure_ascii=False, default=str)


def _canon(node: Element | Runs) -> Any:
    if isinstance(node, Runs):
        return [
            [plain(content), {k: plain(v) for k, v in (attrs or {}).items() if v is not None}]
            for content, attrs in node.chunks
            if content != ""
        ]
    attrs = {k: plain(v) for k, v in node.attrs.items() if v is not None}
    return {"tag": node.tag, "attrs": attrs, "children": [_canon(c) for c in node.children]}


def _same_kind(old: Element | Runs, new: Element | Runs) -> bool:
    if isinstance(old, Runs) or isinstance(new, Runs):
        return isinstance(old, Runs) and isinstance(new, Runs)
    return old.tag == new.tag


def sync_fragment(fragment: XmlFragment, target: Tree) -> None:
    """Edit ``fragment`` until it holds ``target``."""
    _sync_children(fragment, target)


def _sync_children(parent: XmlFragment | XmlElement, target: Tree) -> None:
    current = tree_of(parent)
    shared = [c for c in parent.children if isinstance(c, XmlText | XmlElement)]
    if len(shared) != len(parent.children):
        # Something that is neither (never written by an editor): start this level over.
        del parent.children[0 : len(parent.children)]
        current, shared = [], []
    old_keys = [_key(node) for node in current]
    new_keys = [_key(node) for node in target]
    matcher = SequenceMatcher(None, old_keys, new_keys, autojunk=False)
    # From the end backwards, so the indices of what comes before stay valid.
    for tag, i1, i2, j1, j2 in reversed(matcher.get_opcodes()):
        if tag == "equal":
            continue
        old, new = current[i1:i2], target[j1:j2]
        paired = 0
        if tag == "replace":
            while paired < min(len(old), len(new)) and _same_kind(old[paired], new[paired]):
                paired += 1
        # Unpaired tail first (it comes after the pairs), then the pairs in place.
        if i2 > i1 + paired:
            del parent.children[i1 + paired : i2]
        for k, node in enumerate(new[paired:]):
            _insert(parent, i1 + paired + k, node)
        for k in range(paired):
            _update(shared[i1 + k], new[k])


def _update(shared: XmlText | XmlElement, node: Element | Runs) -> None:
    if isinstance(node, Runs):
        assert isinstance(shared, XmlText)
        restore_chunks(shared, node.chunks)
        return
    assert isinstance(shared, XmlElement)
    have = attributes_of(shared)
    for key in have:
        if node.attrs.get(key) is None:
            del shared.attributes[key]
    for key, value in node.attrs.items():
        if value is not None and (key not in have or plain(have[key]) != plain(value)):
            shared.attributes[key] = value
    _sync_children(shared, node.children)


def _insert(parent: XmlFragment | XmlElement, index: int, node: Element | Runs) -> None:
    if isinstance(node, Runs):
        text = parent.children.insert(index, XmlText())
        restore_chunks(text, node.chunks)
        return
    attrs = {k: v for k, v in node.attrs.items() if v is not None}
    element = parent.children.insert(index, XmlElement(node.tag, attrs))
    for k, child in enumerate(node.children):
        _insert(element, k, child)
