"""One stored update as history reads it, who made it, and a merged run of them.

A leaf: stdlib only, no I/O. ``collab.store`` builds these rows from the ``updates`` table
and ``collab.history`` replays them; both import them from here, so neither layer imports
the other for a row type (the store never imports ``collab.history``, and the pure history
modules never import ``collab.store``). Nothing here knows SQL or Yjs.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MergedRun", "Row", "TimelineRow", "identity"]

TimelineRow = tuple[int, int, str | None, str | None, int | None, int | None, bytes | None]
"""A row as a timeline page reads it: ``(seq, created_ms, author, connection_id, inserted,
deleted, data)``, a plain tuple since a page reads thousands. ``data`` is there only when
the counts are not (``None``: not measured), for the timeline to measure."""


def identity(author: str | None, connection_id: str | None) -> str:
    """Who made a change, as history shows it: the one definition of authorship.

    The stored ``author`` (the verified identity once authentication exists, until then
    the name the client gave), else the connection's id, so two anonymous editors are still
    told apart.
    """
    if author:
        return author
    return f"connection:{connection_id}" if connection_id else "unknown"


@dataclass(frozen=True, slots=True)
class Row:
    """One stored update (or one merged run of them) as history reads it.

    ``first_seq`` is the first seq the row covers: ``seq`` for an update as received, the
    first seq of the run for a row compaction merged.
    """

    seq: int
    first_seq: int
    created_ms: int
    data: bytes
    author: str | None
    connection_id: str | None
    inserted: int | None = None
    """Characters it inserts, as stored with it (``None``: not measured)."""
    deleted: int | None = None
    """Clock units it deletes, as stored with it (``None``: not measured)."""

    @property
    def who(self) -> str:
        """``identity`` of the row's author and connection."""
        return identity(self.author, self.connection_id)


@dataclass(frozen=True, slots=True)
class MergedRun:
    """A run of rows ``first_seq..last_seq`` (``rows`` of them) to replace by one row:
    what compaction (``collab.history.compaction``) hands the store. Its counts are its
    members' added up, not the merged update's: merging cancels text a run typed and then
    deleted, and the timeline should still show the work it was."""

    first_seq: int
    last_seq: int
    rows: int
    data: bytes
    created_ms: int
    author: str | None
    connection_id: str | None
    inserted: int | None = None
    """The sum of its members' counts; ``None`` if any member's is ``None``."""
    deleted: int | None = None
