"""known() and apply_unless_known(): echoes are recognised and dropped, new updates are
applied, in both of the module's paths (the raw one, and the public one inside an open
transaction)."""

from __future__ import annotations

from typing import Any

import pytest
from pycrdt import Doc, Text

from collab.sync.ydoc import apply_unless_known, is_panic, known


def _edit(text: str, doc: Doc[Any] | None = None) -> tuple[Doc[Any], bytes]:
    doc = doc if doc is not None else Doc()
    before = doc.get_state()
    content = doc.get("content", type=Text)
    content += text
    return doc, doc.get_update(before)


def test_an_update_the_document_has_is_known() -> None:
    """An update whose structs the document has already is an echo."""
    source, update = _edit("hi")
    assert known(source, update)


def test_a_new_update_is_not_known() -> None:
    """An update with structs the document lacks is not an echo."""
    _, update = _edit("hi")
    assert not known(Doc(), update)


def test_a_delete_only_update_is_never_known() -> None:
    """An update that only deletes (no structs) is never taken for an echo."""
    source, _ = _edit("abc")
    before = source.get_state()
    del source.get("content", type=Text)[0:1]
    delete = source.get_update(before)
    assert delete[0] == 0
    assert not known(source, delete)


def test_apply_unless_known_applies_a_new_update() -> None:
    """A new update is applied and reported as applied."""
    _, update = _edit("hello")
    target: Doc[Any] = Doc()
    assert apply_unless_known(target, update) is True
    assert str(target.get("content", type=Text)) == "hello"


def test_apply_unless_known_skips_an_echo() -> None:
    """Applying the same update twice changes nothing the second time and says so."""
    _, update = _edit("hello")
    target: Doc[Any] = Doc()
    apply_unless_known(target, update)
    assert apply_unless_known(target, update) is False
    assert str(target.get("content", type=Text)) == "hello"


def test_apply_unless_known_inside_an_open_transaction() -> None:
    """With a transaction already open, the public path applies it in that transaction."""
    _, update = _edit("in txn")
    target: Doc[Any] = Doc()
    with target.transaction():
        assert apply_unless_known(target, update) is True
        assert apply_unless_known(target, update) is False
    assert str(target.get("content", type=Text)) == "in txn"


def test_a_malformed_update_raises_value_error_and_changes_nothing() -> None:
    """Bytes yrs cannot decode raise ValueError and leave the document as it was."""
    target, _ = _edit("kept")
    with pytest.raises(ValueError):
        apply_unless_known(target, b"\x01\x01\xff\xff\xff\xff\x0f")
    assert str(target.get("content", type=Text)) == "kept"


def test_an_empty_update_raises_index_error() -> None:
    """Empty bytes raise IndexError, as known() always did."""
    with pytest.raises(IndexError):
        apply_unless_known(Doc(), b"")


def test_is_panic_recognises_only_pyo3_panics() -> None:
    """A BaseException named PanicException from pyo3_runtime is a panic; others are not."""
    panic = type("PanicException", (BaseException,), {"__module__": "pyo3_runtime"})
    assert is_panic(panic())
    assert not is_panic(ValueError("x"))
    assert not is_panic(type("PanicException", (BaseException,), {})())
