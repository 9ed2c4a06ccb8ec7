"""known() and apply_unless_known(): echoes are recognised and dropped, new updates are
applied, in both of the module's paths (the raw one, and the public one inside an open
transaction); state_of() and update_of() answer as pycrdt's public API does."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings, strategies as st
from pycrdt import Doc, Text

from collab.sync.ydoc import apply_unless_known, is_panic, known, state_of, update_of


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


@settings(max_examples=150, deadline=None)
@given(
    edits=st.lists(
        st.tuples(st.text(alphabet="ab yz", max_size=8), st.booleans()), min_size=0, max_size=12
    ),
    split=st.integers(min_value=0, max_value=12),
)
def test_state_of_and_update_of_answer_as_the_public_api(
    edits: list[tuple[str, bool]], split: int
) -> None:
    """``state_of`` and ``update_of`` (raw, one Rust transaction) give the bytes
    ``Doc.get_state`` and ``Doc.get_update`` give, for the whole document and from a
    peer's state, and so does their public path inside an open transaction."""
    doc: Doc[Any] = Doc()
    peer: Doc[Any] = Doc()
    content = doc.get("content", type=Text)
    for i, (text, delete) in enumerate(edits):
        if delete and len(content):
            del content[0 : min(len(content), 2)]
        else:
            content += text
        if i + 1 == split:
            peer.apply_update(doc.get_update())
    assert state_of(doc) == doc.get_state()
    assert update_of(doc) == doc.get_update()
    assert update_of(doc, peer.get_state()) == doc.get_update(peer.get_state())
    with doc.transaction():
        assert state_of(doc) == doc.get_state()
        assert update_of(doc, peer.get_state()) == doc.get_update(peer.get_state())
    after: Doc[Any] = Doc()
    after.apply_update(peer.get_update())
    after.apply_update(update_of(doc, peer.get_state()))
    assert str(after.get("content", type=Text)) == str(content)


def test_update_of_refuses_a_malformed_state_vector() -> None:
    """A state vector yrs cannot decode raises ValueError on the raw path, as
    ``Doc.get_update`` does, and the document stays usable."""
    doc, _ = _edit("kept")
    with pytest.raises(ValueError):
        doc.get_update(b"\xff\xff\xff")
    with pytest.raises(ValueError):
        update_of(doc, b"\xff\xff\xff")
    assert update_of(doc) == doc.get_update()
