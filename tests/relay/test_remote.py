"""What other nodes relay (``collab.relay.remote``), applied to a real hub on a real store
with direct-path members (``tests.relay.test_hub``): relayed to every local member, never
stored here; invalid messages and rooms not loaded here are ignored; a dead node's
cursors are removed. The Redis path end to end is ``tests/relay/test_cluster.py``."""

from __future__ import annotations

import asyncio

from collab.config import Config
from collab.relay.connection import binary_frame
from collab.sync.protocol import AwarenessEntry, encode_awareness, encode_update
from tests.relay.test_hub import _framing, _rows


async def test_another_nodes_update_reaches_every_member_and_is_not_stored(
    config: Config,
) -> None:
    """Its node stored it: here it is applied and relayed to all members, sender or not."""
    async with _framing(config) as f:
        message = encode_update(f.updates[0])
        f.hub.receive_remote("framing", "node-b", message)
        assert all(wire.frames == [binary_frame(message)] for wire in f.wires.values())
        await f.hub.store.flush()
        assert await asyncio.to_thread(_rows, config.db, "SELECT seq FROM updates") == []


async def test_an_invalid_message_from_another_node_changes_nothing(config: Config) -> None:
    """A malformed update relayed by a buggy node is logged and dropped: room unchanged."""
    async with _framing(config) as f:
        before = f.room.doc.get_update()
        f.hub.receive_remote("framing", "node-b", b"\x00\x02\x05\xff\xff")
        assert f.room.doc.get_update() == before
        assert all(wire.frames == [] for wire in f.wires.values())


async def test_a_message_for_a_room_not_loaded_here_is_ignored(config: Config) -> None:
    """Nothing is loaded for a room this node does not serve."""
    async with _framing(config) as f:
        f.hub.receive_remote("elsewhere", "node-b", encode_update(f.updates[0]))
        assert "elsewhere" not in f.hub.rooms


async def test_a_dead_nodes_cursors_are_removed(config: Config) -> None:
    """``forget_node`` removes the awareness states another node's clients announced."""
    async with _framing(config) as f:
        entry = AwarenessEntry(4242, 1, {"user": {"name": "remote"}})
        f.hub.receive_remote("framing", "node-b", encode_awareness([entry]))
        assert 4242 in f.room.awareness
        f.hub.forget_node("node-b")
        assert 4242 not in f.room.awareness
