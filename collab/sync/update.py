"""Reading the Yjs v1 update format far enough to measure a change.

PURE: bytes in, numbers out. pycrdt applies updates but does not say what is in one
without applying it to a document and observing the result, which costs ~40 µs per update
(observer callbacks); the timeline needs the size of every update on a page, so this module
walks the encoding itself (~3 µs for a keystroke). It never builds a document and never
validates more than it must: the room already applied every stored update successfully.

The format (yjs ``src/utils/encoding.js``, ``readClientsStructRefs`` and ``readDeleteSet``):
for each client a run of structs (GC, Skip or Item with optional origins, parent and
content), then a delete set of ``(client, clock, length)`` ranges.
"""

from __future__ import annotations

from dataclasses import dataclass

from collab.errors import ProtocolError
from collab.sync.varint import Reader

__all__ = ["UpdateStats", "measure"]

# Content refs (yjs src/structs/Item.js contentRefs).
_GC, _DELETED, _JSON, _BINARY, _STRING, _EMBED, _FORMAT, _TYPE, _ANY, _DOC, _SKIP = (
    0,
    1,
    2,
    3,
    4,
    5,
    6,
    7,
    8,
    9,
    10,
)
_XML_ELEMENT, _XML_HOOK = 3, 5  # type refs that carry a name


@dataclass(frozen=True, slots=True)
class UpdateStats:
    """What one update does, in characters.

    ``inserted`` counts the characters of the text it inserts (Y.Text, Y.XmlText).
    ``deleted`` counts the Yjs clock units it deletes: one per character (UTF-16 code unit,
    as Yjs counts) and one per deleted embed, formatting mark, array element or map value.
    """

    inserted: int = 0
    deleted: int = 0


def measure(update: bytes) -> UpdateStats:
    """Count what a Yjs v1 update inserts and deletes.

    Raises:
        ValueError: the bytes are not a Yjs v1 update.
    """
    try:
        return _measure(Reader(update))
    except (IndexError, UnicodeDecodeError, ProtocolError) as exc:
        raise ValueError("not a Yjs v1 update") from exc


def _measure(r: Reader) -> UpdateStats:
    # The hot loop reads one-byte varints inline (nearly all of them are), falling back
    # to the reader for longer ones: this halves the cost of a keystroke's update.
    data = r.data
    inserted = 0
    for _ in range(r.uint()):  # clients
        structs = r.uint()
        r.uint()  # client
        r.uint()  # first clock
        for _ in range(structs):
            info = data[r.pos]
            r.pos += 1
            ref = info & 0x1F
            if ref == _GC or ref == _SKIP:
                r.uint()
                continue
            if info & 0xC0:
                for _ in range((2 if info & 0x80 else 0) + (2 if info & 0x40 else 0)):
                    if data[r.pos] < 0x80:
                        r.pos += 1
                    else:
                        r.uint()
            else:  # no origins: the parent is written out
                if r.uint() == 1:
                    r.skip_bytes()  # root name
                else:
                    r.uint()  # parent item id
                    r.uint()
                if info & 0x20:
                    r.skip_bytes()  # map key
            if ref == _STRING:
                length = data[r.pos]
                if length < 0x80:
                    start = r.pos + 1
                    r.pos = start + length
                    chunk = data[start : r.pos]
                    if len(chunk) != length:
                        raise IndexError("truncated")
                    inserted += length if chunk.isascii() else len(chunk.decode("utf-8"))
                else:
                    inserted += len(r.string())
            elif ref == _DELETED:
                r.uint()
            elif ref == _JSON:
                for _ in range(r.uint()):
                    r.skip_bytes()
            elif ref == _BINARY or ref == _EMBED:
                r.skip_bytes()
            elif ref == _FORMAT:
                r.skip_bytes()
                r.skip_bytes()
            elif ref == _TYPE:
                if r.uint() in (_XML_ELEMENT, _XML_HOOK):
                    r.skip_bytes()
            elif ref == _ANY:
                for _ in range(r.uint()):
                    r.skip_any()
            elif ref == _DOC:
                r.skip_bytes()
                r.skip_any()
            else:
                raise ValueError(f"unknown content ref {ref}")
    deleted = 0
    for _ in range(r.uint()):  # delete set: clients
        r.uint()
        for _ in range(r.uint()):
            r.uint()
            deleted += r.uint()
    if r.pos != len(data):
        raise ValueError("trailing bytes after the delete set")
    return UpdateStats(inserted, deleted)
