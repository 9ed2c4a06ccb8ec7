"""Lineages in the pure room: a copy of a retired history is refused, and every
legitimate way of reaching the current one still merges (``collab.sync.lineage``)."""

from __future__ import annotations

from typing import Any

import pytest
from pycrdt import Doc, Text

from collab.errors import StaleLineage
from collab.sync.lineage import Retired
from collab.sync.protocol import (
    SyncStep1,
    decode,
    encode_sync_step2,
    encode_update,
)
from collab.sync.room import Append, Reply, Room

ROOT = "content"


def _doc(text: str, client_id: int | None = None) -> Doc[Any]:
    doc: Doc[Any] = Doc() if client_id is None else Doc(client_id=client_id)
    doc.get(ROOT, type=Text).insert(0, text)
    return doc


def _replaced(old: Doc[Any], new: Doc[Any]) -> Room[str]:
    """The room of a document whose history ``old`` was replaced by ``new``'s."""
    current: Doc[Any] = Doc()
    current.apply_update(new.get_update())
    return Room("lin", 1, current, retired=Retired([old.get_state()]))


def _step2(room: Room[str], member: str, client: Doc[Any]) -> list[Any]:
    """``client`` answers the room's SyncStep1 (as on every join) with what it lacks."""
    (step1, *_) = room.join(member)
    assert isinstance(step1, Reply)
    request = decode(step1.data)
    assert isinstance(request, SyncStep1)
    raw = encode_sync_step2(client.get_update(request.state_vector))
    return room.receive(member, decode(raw), raw)


def test_retired_keeps_the_highest_clock_of_every_lineage() -> None:
    """Several retired lineages merge into one table; garbage is not a state vector."""
    first = _doc("one", client_id=7)
    second = _doc("one two three", client_id=7)
    assert len(Retired([first.get_state(), second.get_state()])) == 1
    assert not Retired()
    with pytest.raises(ValueError):
        Retired([b"\x05\x01"])


def test_a_stale_copy_is_refused_and_nothing_of_it_is_applied() -> None:
    """The old client's handshake (its whole history, as y-websocket uploads it) raises
    StaleLineage; the room keeps only the replacement."""
    old = _doc("old text from the stale browser.")
    room = _replaced(old, _doc("replacement text."))
    with pytest.raises(StaleLineage):
        _step2(room, "stale", old)
    assert str(room.doc.get(ROOT, type=Text)) == "replacement text."
    assert room.seq == 0


def test_a_stale_clients_new_typing_is_refused_too() -> None:
    """What the stale client types after the replacement builds on the old history: it
    needs a resync (SyncStep1 back), and the SyncStep2 that answers it is refused."""
    old = _doc("old")
    room = _replaced(old, _doc("new"))
    room.join("stale")
    updates: list[bytes] = []
    old.observe(lambda event: updates.append(event.update))
    old.get(ROOT, type=Text).insert(3, "er")
    effects = room.receive_update("stale", updates[-1], encode_update(updates[-1]))
    assert [type(e) for e in effects] == [Reply]  # "send me what I lack"
    with pytest.raises(StaleLineage):
        _step2(room, "stale-again", old)


def test_edits_on_the_current_lineage_still_merge() -> None:
    """A client that joined after the replacement: its offline edits, a second tab and
    a server restart (a new room from the same state) all merge as before."""
    old = _doc("old")
    new = _doc("new")
    room = _replaced(old, new)
    tab: Doc[Any] = Doc()
    tab.apply_update(room.doc.get_update())
    second: Doc[Any] = Doc()
    second.apply_update(room.doc.get_update())
    tab.get(ROOT, type=Text).insert(3, " offline")  # typed while disconnected
    second.get(ROOT, type=Text).insert(0, "tab two: ")
    assert any(isinstance(e, Append) for e in _step2(room, "tab", tab))
    assert any(isinstance(e, Append) for e in _step2(room, "second", second))
    restarted: Room[str] = Room("lin", 1, room.doc, retired=Retired([old.get_state()]))
    third: Doc[Any] = Doc()
    third.apply_update(restarted.doc.get_update())
    third.get(ROOT, type=Text).insert(0, ">")
    assert any(isinstance(e, Append) for e in _step2(restarted, "third", third))
    assert str(restarted.doc.get(ROOT, type=Text)) == ">tab two: new offline"


def test_a_history_carried_over_is_known_not_stale() -> None:
    """When the replacement contains the retired client's structs (a copy of it), that
    client's handshake uploads nothing new and passes; only its later typing, which the
    current lineage never had, is refused."""
    old = _doc("shared start", client_id=42)
    copy: Doc[Any] = Doc()
    copy.apply_update(old.get_update())
    room = _replaced(old, copy)
    _step2(room, "same", old)  # nothing the room lacks: no error
    old.get(ROOT, type=Text).insert(0, "later ")
    with pytest.raises(StaleLineage):
        _step2(room, "same-later", old)
