"""State vectors and the dependency rule: what a document must hold before an update."""

from __future__ import annotations

import pycrdt
import pytest

from collab.errors import MissingStructs, ProtocolError
from collab.sync.state_vector import (
    MAX_CLOCK,
    check_dependencies,
    check_state_vector,
    decode_state_vector,
)
from collab.sync.varint import write_uint


def test_decode_reads_what_yrs_writes() -> None:
    """A document's own state vector decodes to its client and next clock."""
    doc: pycrdt.Doc[pycrdt.Text] = pycrdt.Doc(client_id=2**40 + 7)
    doc["text"] = text = pycrdt.Text()
    text += "abc"
    assert decode_state_vector(doc.get_state()) == {2**40 + 7: 3}


def test_decode_of_garbage_is_a_value_error() -> None:
    """A cut-short state vector never passes as empty."""
    with pytest.raises(ValueError):
        decode_state_vector(b"\x01\x85")


def test_client_state_vector_bounds() -> None:
    """A state vector a client sends is accepted in bounds and refused past them."""
    check_state_vector(b"\x01" + write_uint(2**40) + write_uint(MAX_CLOCK))
    with pytest.raises(ProtocolError, match="clock out of range"):
        check_state_vector(b"\x01\x01" + write_uint(MAX_CLOCK + 1))
    with pytest.raises(ProtocolError, match="duplicate state vector client"):
        check_state_vector(b"\x02\x01\x01\x01\x02")
    with pytest.raises(ProtocolError, match="trailing bytes"):
        check_state_vector(b"\x00\x00")


def test_update_continuing_the_document_passes() -> None:
    """Structs starting at or before the document's clock, referencing what it has, pass."""
    check_dependencies([(1, 3, 5)], [(2, 0)], {1: 3, 2: 1})


def test_update_starting_past_the_document_is_missing_structs() -> None:
    """Structs that start after the document's clock for their client depend on a gap."""
    with pytest.raises(MissingStructs):
        check_dependencies([(1, 4, 5)], [], {1: 3})


def test_reference_to_an_unknown_item_is_missing_structs() -> None:
    """An origin naming another client's item the document lacks is refused."""
    with pytest.raises(MissingStructs):
        check_dependencies([(1, 0, 1)], [(2, 5)], {2: 5})


def test_reference_into_the_update_itself_passes() -> None:
    """An origin naming an item this same update brings is satisfied by the update."""
    check_dependencies([(1, 0, 2), (2, 0, 3)], [(2, 1)], {})


def test_skip_past_the_document_is_missing_structs() -> None:
    """After a Skip, the document itself must reach past the skipped clocks."""
    check_dependencies([(1, 0, 4)], [(1, -3)], {1: 3})
    with pytest.raises(MissingStructs):
        check_dependencies([(1, 0, 4)], [(1, -3)], {1: 2})
