"""Refusing Yjs updates and state vectors that yrs cannot be trusted with.

PURE: bytes in, ``None`` or ``ProtocolError`` out; stdlib and ``collab.errors`` only. Every
byte a client sends reaches yrs (through pycrdt), and yrs trusts its input in ways that turn
malformed data into a panic (``PanicException``, a ``BaseException``, which can poison the
document for every later call), an allocation abort or undefined behaviour. None of those
can be caught after the fact, so ``check_update`` and ``check_state_vector`` walk the Yjs v1
encoding (yjs ``src/utils/encoding.js`` ``readClientsStructRefs`` / ``readDeleteSet``,
``src/structs/Item.js`` ``readItemContent``, lib0 ``decoding.js`` ``readAny``; yrs
``src/update.rs``, ``src/block.rs``, ``src/updates/decoder.rs``) before pycrdt sees it, and
accept only what both yjs and yrs read the same way and within bounds yrs handles safely.

Why each rule exists, from yrs 0.27/0.28 (the version in pycrdt 0.14):

* Varints are at most 8 bytes and at most 2**53 - 1 (lib0 reads JavaScript numbers), and
  minimal. yrs reads u32 fields with ``wrapping_shl``, so ``2**32`` silently becomes 0.
* Clocks: every struct and delete range has length >= 1 and ends at or below ``MAX_CLOCK``
  (2**31 - 1). yrs keeps clocks as u32 and adds ``clock + len`` unchecked, and some paths
  go through ``i32``; real clients never come near 2**31 operations.
* Client ids are at most 2**53 - 1: yrs ORs a 53-bit client id into a tag mask, so larger ids
  alias smaller ones. A client appears once in the structs and once in the delete set: yrs
  appends a second section to the first one's blocks with a restarted clock and breaks the
  block store's sorted invariant (the "divide by zero" in ``find_index``).
* A reference (origin, right origin, parent) to the item's own client points strictly
  backwards: the referenced item existed when this one was made.
* Every string is valid UTF-8 (yrs uses ``from_utf8_unchecked``: undefined behaviour) and
  every count fits in the bytes left (yrs preallocates with ``with_capacity(count)`` for
  Any arrays and maps, and an allocation failure aborts). Any values nest at most
  ``MAX_DEPTH`` deep (yrs recurses on the native stack).

Refused although some writer could produce them, because yjs and yrs disagree on their
framing: ContentJSON (ref 2: yrs reads one string more than yjs writes; yjs has not
written it since v13) and the XmlHook type (type ref 5: yrs does not read the hook name yjs
writes). yrs-only type refs (weak link 7, subdoc 9, undefined 15) are refused too.

Given the document's state vector, ``check_update`` also refuses an update that depends on
structs the document lacks (which yrs would keep pending): the fuzzer crashed yrs with
segfaults and double frees through pending structs that later updates completed, and never
without them. That refuses updates that arrive before their dependencies, which one server
and in-order WebSockets only see after data loss; the client resyncs on reconnect.

What cannot be decided without the document's contents (a parent id naming a non-type item,
which yrs refuses with ``RuntimeError``; string content under an Array parent, which later
panics) is left to the room's guards; see ``docs/validation.md``.

This module walks the structs and the delete set. The values inside content (strings,
JSON, ``Any``) are checked by ``collab.sync.content``, state vectors and the dependency
rule by ``collab.sync.state_vector``, and every varint is read by ``collab.sync.varint``;
the public names stay importable from here.
"""

from __future__ import annotations

from collections.abc import Mapping

from collab.errors import ProtocolError
from collab.sync.content import MAX_DEPTH, read_string, skip_any, skip_buffer, skip_json
from collab.sync.state_vector import (
    MAX_CLIENT,
    MAX_CLOCK,
    Span,
    check_dependencies,
    check_state_vector,
    decode_state_vector,
)
from collab.sync.varint import read_minimal_uint as _uint

__all__ = [
    "MAX_CLIENT",
    "MAX_CLOCK",
    "MAX_DEPTH",
    "Span",
    "check_state_vector",
    "check_update",
    "check_update_for",
    "check_update_measured",
    "decode_state_vector",
]


# Struct kinds and content refs (yjs src/structs/Item.js contentRefs, yrs block.rs).
_GC, _DELETED, _JSON, _BINARY, _STRING, _EMBED, _FORMAT, _TYPE, _ANY, _DOC, _SKIP = range(11)
_HAS_ORIGIN, _HAS_RIGHT_ORIGIN, _HAS_PARENT_SUB = 0x80, 0x40, 0x20
# Type refs (yjs typeRefs): Array, Map, Text, XmlElement (named), XmlFragment, XmlText.
_XML_ELEMENT = 3
_TYPE_REFS = frozenset({0, 1, 2, 3, 4, 6})


def _id_clock(
    data: bytes, pos: int, own: bytes, client: int, clock: int, refs: list[tuple[int, int]] | None
) -> int:
    """Check an item id (origin or parent): bounded client and clock, same client backwards."""
    if data.startswith(own, pos):
        ref_client = client
        pos += len(own)
    else:
        ref_client = data[pos]
        if ref_client < 0x80:
            pos += 1
        else:
            ref_client, pos = _uint(data, pos)
    ref_clock = data[pos]
    if ref_clock < 0x80:
        pos += 1
    else:
        ref_clock, pos = _uint(data, pos)
    if ref_clock >= MAX_CLOCK:
        raise ProtocolError("reference clock out of range")
    if ref_client == client:
        if ref_clock >= clock:
            raise ProtocolError("reference to a later item of the same client")
    elif refs is not None:
        refs.append((ref_client, ref_clock))
    return pos


def check_update(update: bytes, state: bytes | None = None) -> None:
    """Accept one well-formed Yjs v1 update that yrs can apply safely.

    Args:
        update: the payload of a SyncStep2 or Update message.
        state: the state vector of the document it is for (``doc.get_state()``). Given, the
            update must also depend on nothing the document lacks: each client's structs
            continue from the document's clock for that client or earlier, and every origin
            and parent id is in the document or in the update. yrs keeps other updates
            pending, and the fuzzer crashed it (segfaults, double frees) through pending
            structs that later updates completed; see ``docs/validation.md``.

    Raises:
        ProtocolError: the bytes are not a v1 update, break a bound listed in the module
            docstring, or (with ``state``) depend on structs the document does not have.
        ValueError: ``state`` is not a state vector (it comes from yrs, so a bug).
    """
    if state is None:
        try:
            _check_update(update, None, None)
        except IndexError:
            raise ProtocolError("truncated update") from None
        return
    check_update_for(update, decode_state_vector(state))


def check_update_for(update: bytes, clocks: Mapping[int, int]) -> list[Span]:
    """``check_update`` against a document's clocks, as a room keeps them.

    Decoding the whole state vector for every keystroke would cost time in proportion to
    every client that ever edited the document (a new browser session is a new client), so
    a room keeps ``{client: next clock}`` itself and advances it with the spans this
    returns, once the update is applied.

    Args:
        update: the payload of a SyncStep2 or Update message.
        clocks: the document's state vector as ``{client: next clock}``.

    Returns:
        The clocks each client's structs in ``update`` cover. Every accepted struct
        integrates (none stays pending), so after the apply each client's next clock is at
        least the span's end.

    Raises:
        MissingStructs: the update depends on structs the document lacks (a
            ``ProtocolError``; a client that sends one holds them, and a resync gets them).
        ProtocolError: the bytes are not a v1 update, or break a bound.
    """
    return check_update_measured(update, clocks)[0]


def check_update_measured(update: bytes, clocks: Mapping[int, int]) -> tuple[list[Span], int, int]:
    """``check_update_for``, and what the update inserts and deletes, counted on the way.

    The walk reads every string and every delete range anyway, so the counts cost two
    additions, where measuring the stored row later would walk it again. They equal
    ``collab.sync.update.measure(update)`` for every update accepted here (a property test
    holds the two together): characters (code points) of string content inserted, and Yjs
    clock units in the delete set.

    Returns:
        The spans (as ``check_update_for``), characters inserted, clock units deleted.

    Raises:
        The same as ``check_update_for``.
    """
    refs: list[tuple[int, int]] = []
    spans: list[Span] = []
    try:
        inserted, deleted = _check_update(update, refs, spans)
    except IndexError:
        raise ProtocolError("truncated update") from None
    check_dependencies(spans, refs, clocks)
    return spans, inserted, deleted


def _check_update(
    data: bytes, refs: list[tuple[int, int]] | None, spans: list[tuple[int, int, int]] | None
) -> tuple[int, int]:
    # One-byte varints are read inline (nearly every varint in a keystroke is one byte):
    # a call per varint would double the cost of the common update.
    end = len(data)
    pos = 0
    clients = data[0]
    if clients < 0x80:
        pos = 1
    else:
        clients, pos = _uint(data, pos)
    if clients * 3 > end - pos:
        raise ProtocolError("client count exceeds the data")
    seen: set[int] = set()
    inserted = 0
    for _ in range(clients):
        structs = data[pos]
        if structs < 0x80:
            pos += 1
        else:
            structs, pos = _uint(data, pos)
        start = pos
        client = data[pos]
        if client < 0x80:
            pos += 1
        else:
            client, pos = _uint(data, pos)
        # Origins nearly always name the section's own client: comparing its bytes is five
        # times cheaper than decoding them again.
        own = data[start:pos]
        own_len = pos - start
        clock = data[pos]
        if clock < 0x80:
            pos += 1
        else:
            clock, pos = _uint(data, pos)
        if structs == 0:
            raise ProtocolError("empty client section")
        if structs > end - pos:
            raise ProtocolError("struct count exceeds the data")
        if client in seen:
            raise ProtocolError("duplicate client section")
        seen.add(client)
        first = clock
        for _ in range(structs):
            info = data[pos]
            pos += 1
            if info == _GC or info == _SKIP:
                length = data[pos]
                if length < 0x80:
                    pos += 1
                else:
                    length, pos = _uint(data, pos)
                if info == _SKIP and refs is not None and length > 0:
                    # What follows a Skip integrates only if the document has the skipped
                    # clocks: check it as a reference to the last of them, made from
                    # outside this update's own span.
                    refs.append((client, -(clock + length)))
            else:
                ref = info & 0x1F
                if info & 0xC0:
                    if info & _HAS_ORIGIN:
                        if data.startswith(own, pos):
                            pos += own_len
                            origin = data[pos]
                            if origin < 0x80:
                                pos += 1
                            else:
                                origin, pos = _uint(data, pos)
                            if origin >= clock:
                                raise ProtocolError("reference to a later item of the same client")
                        else:
                            pos = _id_clock(data, pos, own, client, clock, refs)
                    if info & _HAS_RIGHT_ORIGIN:
                        pos = _id_clock(data, pos, own, client, clock, refs)
                else:  # no origins: the parent is written out
                    parent = data[pos]
                    pos += 1
                    if parent == 1:
                        pos = read_string(data, pos)[1]  # root type name
                    elif parent == 0:
                        pos = _id_clock(data, pos, own, client, clock, refs)
                    else:
                        raise ProtocolError("bad parent info")
                    if info & _HAS_PARENT_SUB:
                        pos = read_string(data, pos)[1]  # map key
                if ref == _STRING:
                    length = data[pos]
                    if length < 0x80:
                        start = pos + 1
                        pos = start + length
                        chunk = data[start:pos]
                        if pos > end:
                            raise ProtocolError("truncated string")
                        if chunk.isascii():
                            inserted += length
                        else:
                            try:
                                text = chunk.decode()
                            except UnicodeDecodeError:
                                raise ProtocolError("invalid UTF-8") from None
                            inserted += len(text)
                            # Yjs counts UTF-16 code units.
                            length = len(text.encode("utf-16-le")) >> 1
                    else:
                        text, pos = read_string(data, pos)
                        inserted += len(text)
                        length = len(text.encode("utf-16-le")) >> 1
                elif ref == _ANY:
                    length = data[pos]
                    if length < 0x80:
                        pos += 1
                    else:
                        length, pos = _uint(data, pos)
                    if length > end - pos:
                        raise ProtocolError("Any count exceeds the data")
                    for _ in range(length):
                        pos = skip_any(data, pos, 0)
                elif ref == _DELETED:
                    length = data[pos]
                    if length < 0x80:
                        pos += 1
                    else:
                        length, pos = _uint(data, pos)
                else:
                    length = 1
                    if ref == _FORMAT:
                        pos = read_string(data, pos)[1]
                        pos = skip_json(data, pos)
                    elif ref == _TYPE:
                        type_ref = data[pos]
                        pos += 1
                        if type_ref not in _TYPE_REFS:
                            raise ProtocolError("unsupported type ref")
                        if type_ref == _XML_ELEMENT:
                            pos = read_string(data, pos)[1]
                    elif ref == _BINARY:
                        pos = skip_buffer(data, pos)
                    elif ref == _EMBED:
                        pos = skip_json(data, pos)
                    elif ref == _DOC:
                        pos = read_string(data, pos)[1]  # guid
                        pos = skip_any(data, pos, 0)  # options
                    else:
                        raise ProtocolError("unsupported content ref")
            if length == 0:
                raise ProtocolError("empty struct")
            clock += length
            if clock > MAX_CLOCK:
                raise ProtocolError("clock out of range")
        if spans is not None:
            spans.append((client, first, clock))
        if pos > end:
            raise ProtocolError("truncated update")
    pos, deleted = _check_delete_set(data, pos)
    if pos != end:
        raise ProtocolError("trailing bytes after the update")
    return inserted, deleted


def _check_delete_set(data: bytes, pos: int) -> tuple[int, int]:
    """Check the delete set at ``pos``; return where it ends and the clock units it
    deletes."""
    clients = data[pos]
    if clients < 0x80:
        pos += 1
    else:
        clients, pos = _uint(data, pos)
    if not clients:
        return pos, 0
    end = len(data)
    if clients * 2 > end - pos:
        raise ProtocolError("delete set count exceeds the data")
    seen: set[int] = set()
    deleted = 0
    for _ in range(clients):
        client, pos = _uint(data, pos)
        if client in seen:
            raise ProtocolError("duplicate delete set client")
        seen.add(client)
        ranges, pos = _uint(data, pos)
        if ranges * 2 > end - pos:
            raise ProtocolError("delete range count exceeds the data")
        previous = 0
        for _ in range(ranges):
            clock, pos = _uint(data, pos)
            length, pos = _uint(data, pos)
            if clock < previous:
                raise ProtocolError("delete ranges out of order")
            if length == 0:
                raise ProtocolError("empty delete range")
            previous = clock + length
            if previous > MAX_CLOCK:
                raise ProtocolError("delete range out of range")
            deleted += length
    return pos, deleted
