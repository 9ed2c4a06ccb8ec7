"""The room's decisions, without a socket: synchronous tests of join, receive and leave.

``Pair`` links a ``pycrdt.Doc`` to a room through the wire format, as h11's
``ConnectionPair`` links two protocol objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from pycrdt import Doc, Text

from collab.errors import BadRoomName, DocumentTooLarge, ProtocolError
from collab.sync.protocol import (
    AwarenessEntry,
    SyncStep2,
    SyncUpdate,
    decode,
    encode_awareness,
    encode_sync_step1,
    encode_sync_step2,
    encode_update,
)
from collab.sync.room import (
    Append,
    Broadcast,
    Checkpoint,
    Outgoing,
    Reply,
    Room,
    validate_room_name,
)

ROOT = "content"


def new_room(checkpoint_updates: int = 1000, checkpoint_bytes: int = 1 << 20) -> Room[str]:
    return Room(
        "r", 1, Doc(), checkpoint_updates=checkpoint_updates, checkpoint_bytes=checkpoint_bytes
    )


@dataclass
class Pair:
    """A client document joined to a room under the member name ``member``."""

    room: Room[str]
    member: str
    doc: Doc[Any] = field(default_factory=Doc)
    outbox: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.text = self.doc.get(ROOT, type=Text)
        self.doc.observe(lambda event: self.outbox.append(event.update))
        self.effects = self.room.join(self.member)

    def push(self) -> list[Outgoing[str]]:
        """Send every local change to the room as Update messages."""
        effects: list[Outgoing[str]] = []
        for update in self.outbox:
            raw = encode_update(update)
            effects += self.room.receive(self.member, decode(raw), raw)
        self.outbox.clear()
        return effects

    def sync(self) -> None:
        """Ask the room for what we lack (SyncStep1) and apply the answer."""
        raw = encode_sync_step1(self.doc.get_state())
        (reply,) = self.room.receive(self.member, decode(raw), raw)
        assert isinstance(reply, Reply)
        answer = decode(reply.data)
        assert isinstance(answer, SyncStep2)
        self.doc.apply_update(answer.update)
        self.outbox.clear()


def test_join_sends_step1_then_known_awareness() -> None:
    """A joiner gets the room's SyncStep1, plus awareness states when there are any."""
    room = new_room()
    first = room.join("a")
    assert [type(e) for e in first] == [Reply]
    assert decode(first[0].data).__class__.__name__ == "SyncStep1"  # type: ignore[union-attr]
    raw = encode_awareness([AwarenessEntry(1, 1, {"x": 1})])
    room.receive("a", decode(raw), raw)
    second = room.join("b")
    assert len(second) == 2 and second[1] == Reply(raw)


def test_update_is_appended_then_broadcast_to_others() -> None:
    """An update is numbered for the log, with the characters it inserts and deletes, then
    relayed byte for byte to everyone but its sender: the store's effect comes first, so
    delivering can never skip storing."""
    room = new_room()
    alice = Pair(room, "alice")
    alice.text += "hi"
    raw = encode_update(alice.outbox[0])
    effects = alice.push()
    update = decode(raw).update  # type: ignore[union-attr]
    assert effects == [Append(1, update, "alice", 2, 0), Broadcast(raw, "alice")]
    assert str(room.doc.get(ROOT, type=Text)) == "hi"


def test_step1_gets_exactly_what_is_missing_and_is_cached() -> None:
    """A SyncStep1 is answered with the missing part; identical asks share one encoding."""
    room = new_room()
    alice, bob = Pair(room, "alice"), Pair(room, "bob")
    alice.text += "hello"
    alice.push()
    bob.sync()
    assert str(bob.text) == "hello"
    raw = encode_sync_step1(b"\x00")
    (first,) = room.receive("x", decode(raw), raw)
    (second,) = room.receive("y", decode(raw), raw)
    assert isinstance(first, Reply) and isinstance(second, Reply)
    assert first.data is second.data  # the same bytes object: encoded once


def test_step2_keeps_only_what_is_new() -> None:
    """A reconnecting client's SyncStep2 stores only structs the room lacked."""
    room = new_room()
    alice = Pair(room, "alice")
    alice.text += "abc"
    alice.push()
    full = alice.doc.get_update()
    raw = encode_sync_step2(full)
    assert room.receive("alice", decode(raw), raw) == []  # nothing new: nothing stored
    alice.text += "d"
    raw = encode_sync_step2(alice.doc.get_update())
    effects = room.receive("alice", decode(raw), raw)
    appended = [e for e in effects if isinstance(e, Append)]
    assert len(appended) == 1 and len(appended[0].update) < len(alice.doc.get_update())
    assert str(room.doc.get(ROOT, type=Text)) == "abcd"


def test_invalid_update_raises_and_changes_nothing() -> None:
    """An update the document rejects raises ProtocolError; seq and state are unchanged."""
    room = new_room()
    raw = encode_update(b"\xff\xff\xff")
    with pytest.raises(ProtocolError):
        room.receive("m", decode(raw), raw)
    assert room.seq == 0


def test_empty_update_is_ignored() -> None:
    """An empty update is neither relayed nor stored."""
    room = new_room()
    raw = encode_update(b"\x00\x00")
    assert room.receive("m", decode(raw), raw) == []


def test_leave_removes_the_members_awareness() -> None:
    """Leaving broadcasts a null state for each awareness client the member announced."""
    room = new_room()
    room.join("a")
    room.join("b")
    raw = encode_awareness([AwarenessEntry(10, 4, {"n": 1}), AwarenessEntry(11, 1, {"n": 2})])
    assert room.receive("a", decode(raw), raw) == [Broadcast(raw, None)]  # echoed to a too
    (removal,) = room.leave("a")
    assert isinstance(removal, Broadcast)
    assert decode(removal.data) == decode(
        encode_awareness([AwarenessEntry(10, 4, None), AwarenessEntry(11, 1, None)])
    )
    assert room.awareness == {}


def test_stale_awareness_clock_is_not_stored() -> None:
    """An awareness entry with an older clock does not overwrite a newer one."""
    room = new_room()
    room.join("a")
    new = encode_awareness([AwarenessEntry(1, 5, {"v": "new"})])
    old = encode_awareness([AwarenessEntry(1, 3, {"v": "old"})])
    room.receive("a", decode(new), new)
    room.receive("a", decode(old), old)
    assert room.awareness[1].state == {"v": "new"}


def test_checkpoint_every_n_updates_and_on_unload() -> None:
    """A checkpoint is due every N updates, and on unload when updates came since."""
    room = new_room(checkpoint_updates=3)
    alice = Pair(room, "alice")
    checkpoints = []
    for ch in "abcdefg":
        alice.text += ch
        checkpoints += [e for e in alice.push() if isinstance(e, Checkpoint)]
    assert [c.upto_seq for c in checkpoints] == [3, 6]
    (final,) = room.unload()
    assert isinstance(final, Checkpoint) and final.upto_seq == 7
    restored: Doc[Any] = Doc()
    restored.apply_update(final.state)
    assert str(restored.get(ROOT, type=Text)) == "abcdefg"
    assert room.unload() == []


def test_checkpoint_by_bytes() -> None:
    """A large update triggers a checkpoint even before N updates."""
    room = new_room(checkpoint_updates=1000, checkpoint_bytes=1000)
    alice = Pair(room, "alice")
    alice.text += "x" * 2000
    assert any(isinstance(e, Checkpoint) for e in alice.push())


@pytest.mark.parametrize("name", ["", "a" * 513, "bad\x00", "bad\nname"])
def test_invalid_room_names(name: str) -> None:
    """Empty, too long or control-character names are refused with BadRoomName (4400)."""
    with pytest.raises(BadRoomName) as info:
        validate_room_name(name, 512)
    assert info.value.close_code == 4400


def test_valid_room_names() -> None:
    """Slashes, spaces and non-ASCII letters are fine."""
    for name in ["a", "team/notes/été", "with space", "日本語"]:
        assert validate_room_name(name, 512) == name


def test_echoed_update_is_neither_relayed_nor_stored() -> None:
    """An update whose structs the room already has (a client echoing) is dropped."""
    room = new_room()
    alice = Pair(room, "alice")
    alice.text += "abc"
    raw = encode_update(alice.outbox[0])
    alice.push()
    assert room.receive("bob", decode(raw), raw) == []
    assert room.seq == 1


def test_update_waiting_for_dependencies_asks_its_sender_to_resync() -> None:
    """An update whose structs depend on missing ones is neither applied, stored nor
    relayed (yrs would keep it pending, where fuzzing crashed it): its sender gets our
    SyncStep1, and the SyncStep2 it answers with brings everything."""
    room = new_room()
    source: Doc[Any] = Doc()
    text = source.get(ROOT, type=Text)
    updates: list[bytes] = []
    source.observe(lambda e: updates.append(e.update))
    text += "a"
    text += "b"
    later = encode_update(updates[1])
    effects = room.receive("m", decode(later), later)
    assert effects == [Reply(encode_sync_step1(room.doc.get_state()))]
    assert room.seq == 0 and room.resyncs == 1
    answer = encode_sync_step2(source.get_update(room.doc.get_state()))
    effects = room.receive("m", decode(answer), answer)
    assert [type(e) for e in effects] == [Append, Broadcast]
    assert str(room.doc.get(ROOT, type=Text)) == "ab"


def _edits() -> list[tuple[str, bytes]]:
    """Update messages from two editors covering every case ``Room._apply`` tells apart."""
    alice: Doc[Any] = Doc(client_id=1)
    bob: Doc[Any] = Doc(client_id=2)
    sent: dict[int, list[bytes]] = {1: [], 2: []}
    alice.observe(lambda e: sent[1].append(e.update))
    bob.observe(lambda e: sent[2].append(e.update))
    a, b = alice.get(ROOT, type=Text), bob.get(ROOT, type=Text)
    for ch in "hello":
        a += ch
    a1 = sent[1][:]
    bob.apply_update(alice.get_update())
    a += "!"  # a6: bob never sees it...
    a6 = sent[1][-1]
    bob.apply_update(a6)
    b.insert(6, "?")  # ...but bob's next edit depends on it
    b_pending = sent[2][-1]
    del a[0:2]  # a delete set only: the update's first byte is 0
    a_delete = sent[1][-1]
    assert a_delete[0] == 0 and a1[0][0] != 0
    plan: list[tuple[str, bytes]] = [("alice", u) for u in a1]
    plan += [
        ("bob", a1[2]),  # an echo
        ("bob", b_pending),  # depends on a6: not applied, bob is asked to resync
        ("bob", b_pending),  # still missing a6: asked again
        ("carol", b"\x01\x01\xff\xff"),  # structs claimed, garbage: the echo check raises
        ("carol", b"\x00\x05\xff"),  # no structs, garbage: the apply itself raises
        ("alice", a6),  # b_pending is integrated now
        ("alice", a_delete),
        ("alice", a_delete),  # a delete set is never taken for an echo
        ("bob", b_pending),  # a6 is here now: applied
    ]
    return [(member, encode_update(update)) for member, update in plan]


def _run(room: Room[str], plan: list[tuple[str, bytes]]) -> list[object]:
    """What ``room`` does with each message: its effects, or the error it raised."""
    outcomes: list[object] = []
    for member, raw in plan:
        try:
            outcomes.append(room.receive(member, decode(raw), raw))
        except ProtocolError as exc:
            outcomes.append((type(exc), exc.reason))
        # The one-transaction path leaves no transaction open, even after an error.
        assert room.doc._txn is None
    return outcomes


def test_one_transaction_path_matches_the_public_api(monkeypatch: pytest.MonkeyPatch) -> None:
    """collab.sync.ydoc's raw path and pycrdt's public API give the same effects and documents:
    fresh updates, echoes, updates missing their dependencies (a resync request), delete-only
    updates and invalid updates (ProtocolError, nothing applied, the document still usable)."""
    from collab.sync import ydoc

    assert ydoc._RAW, "pycrdt changed: collab.sync.ydoc fell back to the public API"
    plan = _edits()
    fast = new_room(checkpoint_updates=4)
    fast_outcomes = _run(fast, plan)
    monkeypatch.setattr(ydoc, "_RAW", False)
    public = new_room(checkpoint_updates=4)
    public_outcomes = _run(public, plan)
    assert fast_outcomes == public_outcomes
    assert fast.doc.get_update() == public.doc.get_update()
    assert fast.doc.get_state() == public.doc.get_state()
    assert str(fast.doc.get(ROOT, type=Text)) == "llo!?"
    # Spot checks that the plan exercised what it says.
    relayed = [o for o in fast_outcomes if isinstance(o, list) and o and type(o[0]) is Append]
    assert len(relayed) == 5 + 1 + 2 + 1  # a1, a6, a_delete twice, b_pending at last
    resyncs = [o for o in fast_outcomes if isinstance(o, list) and o and type(o[0]) is Reply]
    assert len(resyncs) == 2 and fast.resyncs == 2  # b_pending before a6, twice
    assert sum(1 for o in fast_outcomes if o == []) == 1  # the echo
    assert sum(1 for o in fast_outcomes if isinstance(o, tuple)) == 2  # the two invalid


def test_size_limit_still_lets_echoes_pass_quietly() -> None:
    """Past the size limit a fresh update is refused (4413) but an echo is still just
    dropped, and an invalid one is still a ProtocolError, as before the one-transaction
    path."""
    room = new_room()
    alice = Pair(room, "alice")
    alice.text += "abc"
    echo = encode_update(alice.outbox[0])
    alice.push()
    room.max_size = room.size  # full
    assert room.receive("bob", decode(echo), echo) == []
    alice.text += "d"
    fresh = encode_update(alice.outbox[0])
    with pytest.raises(DocumentTooLarge):
        room.receive("alice", decode(fresh), fresh)
    bad = encode_update(b"\x01\x01\xff\xff")
    with pytest.raises(ProtocolError):
        room.receive("alice", decode(bad), bad)
    assert str(room.doc.get(ROOT, type=Text)) == "abc" and room.seq == 1


def test_receive_update_is_receive_of_a_sync_update() -> None:
    """The hub's hot path (``receive_update``, no message object) decides as ``receive``."""
    plan = _edits()
    via_receive, via_update = new_room(checkpoint_updates=4), new_room(checkpoint_updates=4)
    for member, raw in plan:
        outcomes: list[object] = []
        for room in (via_receive, via_update):
            message = decode(raw)
            assert isinstance(message, SyncUpdate)
            try:
                if room is via_receive:
                    outcomes.append(room.receive(member, message, raw))
                else:
                    outcomes.append(room.receive_update(member, message.update, raw))
            except ProtocolError as exc:
                outcomes.append(exc.reason)
        assert outcomes[0] == outcomes[1]
    assert via_receive.doc.get_update() == via_update.doc.get_update()


@pytest.mark.parametrize("raw", [True, False])
def test_one_transaction_path_inside_a_transaction_and_with_observers(
    raw: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """collab.sync.ydoc inside an open pycrdt transaction reuses it (the public path), and an
    observer's error surfaces as pycrdt's ExceptionGroup, the document still usable: the
    same with and without the one-transaction path."""
    from collab.sync import ydoc
    from collab.sync.ydoc import apply_unless_known

    monkeypatch.setattr(ydoc, "_RAW", raw)

    source: Doc[Any] = Doc()
    text = source.get(ROOT, type=Text)
    updates: list[bytes] = []
    source.observe(lambda e: updates.append(e.update))
    text += "a"
    text += "b"
    doc: Doc[Any] = Doc()
    with doc.transaction():
        assert apply_unless_known(doc, updates[0])
        assert not apply_unless_known(doc, updates[0])  # an echo
    assert str(doc.get(ROOT, type=Text)) == "a"

    def fail(event: object) -> None:
        raise RuntimeError("observer failed")

    subscription = doc.observe(fail)
    with pytest.raises(ExceptionGroup) as info:
        apply_unless_known(doc, updates[1])
    assert [str(e) for e in info.value.exceptions] == ["observer failed"]
    doc.unobserve(subscription)
    assert doc._txn is None and str(doc.get(ROOT, type=Text)) == "ab"
