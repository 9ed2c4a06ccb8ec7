"""restore_update(): the one update that turns a document's content into an older one's."""

from __future__ import annotations

from typing import Any

from pycrdt import Array, Doc, Map, Text

from collab.history.restore import restore_update


def _doc(update: bytes | None = None) -> Doc[Any]:
    doc: Doc[Any] = Doc()
    if update:
        doc.apply_update(update)
    return doc


def test_restore_turns_current_text_into_the_target() -> None:
    """Applied to a copy of the current document, the update yields the target's text."""
    old = _doc()
    old.get("content", type=Text).insert(0, "the quick fox")
    current = _doc(old.get_update())
    current.get("content", type=Text).insert(4, "very ")
    del current.get("content", type=Text)[0:4]
    change = restore_update(_doc(current.get_update()), old)
    current.apply_update(change)
    assert str(current.get("content", type=Text)) == "the quick fox"


def test_restore_brings_back_map_and_array_roots() -> None:
    """Map values and array items the target had come back; ones it lacked go."""
    old = _doc()
    old.get("meta", type=Map)["title"] = "Plan"
    old.get("items", type=Array).extend([1, 2])
    current = _doc(old.get_update())
    current.get("meta", type=Map)["title"] = "Changed"
    current.get("meta", type=Map)["extra"] = True
    current.get("items", type=Array).append(3)
    current.apply_update(restore_update(_doc(current.get_update()), old))
    assert current.get("meta", type=Map).to_py() == {"title": "Plan"}
    assert current.get("items", type=Array).to_py() == [1.0, 2.0]


def test_restoring_the_current_content_changes_nothing() -> None:
    """When the target equals the current content the result is empty."""
    doc = _doc()
    doc.get("content", type=Text).insert(0, "same")
    assert restore_update(_doc(doc.get_update()), _doc(doc.get_update())) == b""
