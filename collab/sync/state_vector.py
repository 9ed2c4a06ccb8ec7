"""State vectors, and whether an update depends on structs a document lacks.

PURE: stdlib, ``collab.errors`` and ``collab.sync.varint`` only. A state vector is a
count, then ``(client, next clock)`` pairs: ``check_state_vector`` bounds one a client
sends (a SyncStep1), ``decode_state_vector`` reads one yrs wrote, and
``check_dependencies`` compares what an update's structs cover and reference (as
``validator`` collected them) with a document's clocks. Why pending structs are refused
is in ``validator``'s docstring.
"""

from __future__ import annotations

from collections.abc import Mapping

from collab.errors import MissingStructs, ProtocolError
from collab.sync.varint import MAX_UINT, read_minimal_uint as _uint

__all__ = [
    "MAX_CLIENT",
    "MAX_CLOCK",
    "Span",
    "check_dependencies",
    "check_state_vector",
    "decode_state_vector",
]

Span = tuple[int, int, int]
"""``(client, first clock, end clock)``: the clocks one client's structs in an update cover."""

MAX_CLIENT = MAX_UINT  # lib0 varints are JavaScript safe integers
MAX_CLOCK = 2**31 - 1  # the highest end (clock + length) of any struct or delete range


def decode_state_vector(state: bytes) -> dict[int, int]:
    """A state vector yrs wrote, as ``{client: next clock}``.

    Raises:
        ValueError: not a state vector (it comes from yrs: a bug, but a bad one must not
            pass as empty).
    """
    try:
        count, pos = _uint(state, 0)
        have = {}
        for _ in range(count):
            client, pos = _uint(state, pos)
            have[client], pos = _uint(state, pos)
    except (IndexError, ProtocolError):
        raise ValueError("not a state vector") from None
    return have


def check_state_vector(state_vector: bytes) -> None:
    """Accept one well-formed Yjs state vector (a SyncStep1 payload).

    Args:
        state_vector: a count, then ``(client, clock)`` pairs.

    Raises:
        ProtocolError: truncated, trailing bytes, a client twice, or a bound broken.
    """
    data = state_vector
    try:
        count, pos = _uint(data, 0)
        # yrs reserves a hash map of ``count`` entries up front.
        if count * 2 > len(data) - pos:
            raise ProtocolError("state vector count exceeds the data")
        seen: set[int] = set()
        for _ in range(count):
            client, pos = _uint(data, pos)
            clock, pos = _uint(data, pos)
            if clock > MAX_CLOCK:
                raise ProtocolError("clock out of range")
            if client in seen:
                raise ProtocolError("duplicate state vector client")
            seen.add(client)
    except IndexError:
        raise ProtocolError("truncated state vector") from None
    if pos != len(data):
        raise ProtocolError("trailing bytes after the state vector")


def check_dependencies(
    spans: list[Span], refs: list[tuple[int, int]], clocks: Mapping[int, int]
) -> None:
    """Refuse an update whose structs or references reach past a document's clocks.

    Args:
        spans: the clocks each client's structs in the update cover.
        refs: the ``(client, clock)`` ids its origins and parents name outside its own
            client; a negative clock is the end of a Skip, which the document must reach.
        clocks: the document's state vector as ``{client: next clock}``.

    Raises:
        MissingStructs: the update depends on structs the document lacks.
    """
    mine: dict[int, tuple[int, int]] = {}
    for client, first, end in spans:
        if first > clocks.get(client, 0):
            raise MissingStructs("update depends on missing structs")
        mine[client] = (first, end)
    for client, clock in refs:
        if clock < 0:  # after a Skip: the document itself must reach past the gap
            if -clock > clocks.get(client, 0):
                raise MissingStructs("update depends on missing structs")
            continue
        if clock < clocks.get(client, 0):
            continue
        span = mine.get(client)
        if span is None or not span[0] <= clock < span[1]:
            raise MissingStructs("update depends on missing structs")
