"""Making a past version the current content again, as one new change.

PURE: takes the current document and the target version and returns one Yjs update that,
applied to the current document, makes every root hold the target's content. History is
never rewritten: the restore is an ordinary edit (it shows in the timeline under its
author, is relayed to everyone in the room, and restoring the version just before it
undoes it).

The change is small where it can be: a Y.Text gets a character diff (``textedit``), so the
parts that did not change keep their identity and concurrent edits there still merge, and
its formatting is set back where it differs; an XML fragment (rich text) is edited as a
tree (``xmledit``: unchanged blocks kept, structure, attributes and formatting exactly the
target's); map keys are set or deleted one by one; arrays keep their common first and
last elements. Lexical's XmlText root is not restored (``Conflict``): pycrdt cannot write
its nested XmlTexts, and a copy as text would corrupt it.
"""

from __future__ import annotations

from typing import Any

from pycrdt import Array, Doc, Map, Text, XmlElement, XmlFragment, XmlText

from collab.history.replay import Conflict, root_kinds
from collab.history.richtext import XML_FRAGMENT, lexical_json, tree_of, xml_kind
from collab.history.textedit import restore_chunks
from collab.history.xmledit import sync_fragment

__all__ = ["restore_update"]


def restore_update(current: Doc[Any], target: Doc[Any]) -> bytes:
    """Compute the change that turns ``current`` into ``target``'s content.

    ``current`` is changed in place (pass a copy). An empty result means there is nothing
    to change.
    """
    kinds = root_kinds(target)
    current_kinds = root_kinds(current)
    updates: list[bytes] = []
    subscription = current.observe(lambda event: updates.append(event.update))
    try:
        with current.transaction():
            for name in sorted(set(kinds) | set(current_kinds)):
                kind = kinds.get(name, "empty")
                if "unreadable" in (kind, current_kinds.get(name)):
                    continue  # neither side can be read without hanging yrs: leave it
                if kind == "empty":
                    _clear(current, name, current_kinds.get(name, "empty"))
                elif kind == "text":
                    _restore_text(current.get(name, type=Text), target.get(name, type=Text))
                elif kind == "map":
                    _restore_map(current.get(name, type=Map), target.get(name, type=Map))
                elif kind == "array":
                    _restore_array(current.get(name, type=Array), target.get(name, type=Array))
                elif xml_kind(target.get(name, type=Text)) == XML_FRAGMENT and (
                    current_kinds.get(name) != "xml"
                    or xml_kind(current.get(name, type=Text)) == XML_FRAGMENT
                ):
                    sync_fragment(
                        current.get(name, type=XmlFragment),
                        tree_of(target.get(name, type=XmlFragment)),
                    )
                elif current_kinds.get(name) != "xml" or _lexical(current, name) != _lexical(
                    target, name
                ):
                    # Lexical's XmlText root: pycrdt cannot write its nested XmlTexts, and
                    # copying them as text would corrupt the document. Refuse instead.
                    raise Conflict(
                        f"root {name!r} is Lexical's rich text (xml_text): restoring it is "
                        "not supported yet (docs/rich-text.md, limits)"
                    )
    finally:
        current.unobserve(subscription)
    return updates[0] if updates else b""


def _lexical(doc: Doc[Any], name: str) -> tuple[str, Any]:
    """What a Lexical root reads as, to tell whether a restore would change it."""
    return str(doc.get(name, type=XmlFragment)), lexical_json(doc.get(name, type=Text))


def _clear(doc: Doc[Any], name: str, kind: str) -> None:
    if kind == "text":
        doc.get(name, type=Text).clear()
    elif kind == "map":
        doc.get(name, type=Map).clear()
    elif kind == "array":
        doc.get(name, type=Array).clear()
    elif kind == "xml":
        children = doc.get(name, type=XmlFragment).children
        del children[0 : len(children)]


def _restore_text(current: Text, target: Text) -> None:
    restore_chunks(current, target.diff())


def _plain(value: Any) -> Any:
    """A comparable form of a value (shared types as JSON-like data)."""
    if isinstance(value, Text | XmlText | XmlElement | XmlFragment):
        return (type(value).__name__, str(value))
    if isinstance(value, Map):
        return {key: _plain(value[key]) for key in value.keys()}
    if isinstance(value, Array):
        return [_plain(item) for item in value]
    return value


def _prelim(value: Any) -> Any:
    """A new, not yet integrated copy of a target value (shared types rebuilt)."""
    if isinstance(value, Text):
        return Text(str(value))
    if isinstance(value, Map):
        return Map({key: _prelim(value[key]) for key in value.keys()})
    if isinstance(value, Array):
        return Array([_prelim(item) for item in value])
    if isinstance(value, XmlText):
        return XmlText(str(value))
    if isinstance(value, XmlElement):
        return XmlElement(
            value.tag,
            list(value.attributes.__iter__()),
            [_prelim(child) for child in value.children],
        )
    return value


def _restore_map(current: Map[Any], target: Map[Any]) -> None:
    wanted = {key: target[key] for key in target.keys()}
    for key in list(current.keys()):
        if key not in wanted:
            del current[key]
    for key, value in wanted.items():
        if key not in current or _plain(current[key]) != _plain(value):
            current[key] = _prelim(value)


def _common_ends(old: list[Any], new: list[Any]) -> tuple[int, int]:
    prefix = 0
    while prefix < min(len(old), len(new)) and old[prefix] == new[prefix]:
        prefix += 1
    suffix = 0
    while (
        suffix < min(len(old), len(new)) - prefix
        and old[len(old) - 1 - suffix] == new[len(new) - 1 - suffix]
    ):
        suffix += 1
    return prefix, suffix


def _restore_array(current: Array[Any], target: Array[Any]) -> None:
    old = [_plain(item) for item in current]
    new_items = list(target)
    prefix, suffix = _common_ends(old, [_plain(item) for item in new_items])
    if len(old) - prefix - suffix:
        del current[prefix : len(old) - suffix]
    for k, item in enumerate(new_items[prefix : len(new_items) - suffix]):
        current.insert(prefix + k, _prelim(item))
