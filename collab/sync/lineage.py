"""Lineages: recognising what a client holds of a document's replaced history.

PURE: no I/O. ``Retired`` is plain Python; ``state_vector_of`` asks pycrdt for the state
vector of stored rows (when a history is retired, by the store's caller).

A document's history is replaced (``collab load --replace``, a deletion, purge and
re-creation under the same name, an explicit reset) while some client still holds the
old one: a browser tab left open, an IndexedDB copy, an offline laptop. When that client
reconnects, the y-websocket and Hocuspocus handshakes upload everything the server lacks,
and the old text comes back into the new document for everyone. Nothing in the Yjs
protocol says "this is another document": the structs are simply new to the server.

What does tell them apart is who wrote them. A Yjs struct is identified by its client id
(random per editing session) and its clock, and every lineage a document retired is
remembered as the state vector it had at retirement (``{client: end clock}``). A struct
that a retired lineage's clients wrote (its client is in a retired state vector) and that
the current document lacks can only come from a copy of a retired lineage, so the update
carrying it is refused (``StaleLineage``). Structs of clients the retired lineages never
had, which is every legitimate editor of the current lineage (a new session is a new
client id), pass as before: offline edits, two tabs, restores and restarts all merge.
A struct the current document already has (a retired client's history carried over, as
when the replacement was a copy) is known, not stale.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pycrdt import Doc

from collab.sync.state_vector import Span, decode_state_vector
from collab.sync.ydoc import is_panic

__all__ = ["Retired", "state_vector_of"]


def state_vector_of(rows: Iterable[bytes]) -> bytes:
    """The state vector of a document stored as ``rows`` (its newest checkpoint, then the
    updates after it), as yrs encodes one. A row yrs cannot apply is skipped, as a room
    load skips it (``collab.relay.persistence``): what it would have added is not in the
    document either."""
    doc: Doc[Any] = Doc()
    for row in rows:
        try:
            doc.apply_update(row)
        except BaseException as exc:  # a stored row that panics yrs: skipped, like a load
            if not (is_panic(exc) or isinstance(exc, ValueError | RuntimeError)):
                raise
    return doc.get_state()


class Retired:
    """The clients of every lineage a document retired, with the clock each reached.

    Args:
        state_vectors: the state vector of each retired lineage, as yrs encodes one.

    Raises:
        ValueError: one of them is not a state vector.
    """

    __slots__ = ("_ends",)

    def __init__(self, state_vectors: Iterable[bytes] = ()) -> None:
        ends: dict[int, int] = {}
        for encoded in state_vectors:
            for client, clock in decode_state_vector(encoded).items():
                if clock > ends.get(client, 0):
                    ends[client] = clock
        self._ends = ends

    def __bool__(self) -> bool:
        return bool(self._ends)

    def __len__(self) -> int:
        return len(self._ends)

    def stale(self, spans: Iterable[Span], clocks: Mapping[int, int]) -> bool:
        """Whether an update covering ``spans`` carries structs of a retired lineage that
        the current document (whose next clocks are ``clocks``) lacks.

        ``spans`` are what the validator returns for the update (``check_update_for``):
        ``(client, first clock, end clock)`` for each client's structs in it.
        """
        ends = self._ends
        for client, _, end in spans:
            if client in ends and end > clocks.get(client, 0):
                return True
        return False
