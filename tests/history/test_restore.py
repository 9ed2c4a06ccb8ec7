"""restore_update(): the one update that turns a document's content into an older one's."""

from __future__ import annotations

from typing import Any

import pytest
from pycrdt import Array, Doc, Map, Text

from collab.history.replay import Conflict
from collab.history.restore import restore_update
from tests.richdoc import from_update, node_rich


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


def test_a_lexical_root_is_refused_not_corrupted() -> None:
    """Restoring a different Lexical root is a Conflict (pycrdt cannot write its nested
    XmlTexts); restoring the same content changes nothing."""
    current = from_update(node_rich({"op": "lexical", "text": "Hello"})["update"])
    target = from_update(node_rich({"op": "lexical", "text": "Bye"})["update"])
    with pytest.raises(Conflict, match="Lexical"):
        restore_update(current, target)
    same = from_update(node_rich({"op": "lexical", "text": "Bye"})["update"])
    assert restore_update(same, target) == b""


def test_formatting_of_kept_text_is_set_back() -> None:
    """Text made bold since the target version is plain again after the restore."""
    target: Doc[Any] = Doc()
    target["content"] = Text("plain words")
    current: Doc[Any] = Doc()
    current.apply_update(target.get_update())
    current.get("content", type=Text).format(0, 5, {"bold": True})
    assert restore_update(current, target)
    assert current.get("content", type=Text).diff() == [("plain words", None)]
