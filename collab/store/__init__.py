"""Persistence: the only package that runs SQL.

``core`` holds the Store: its life, loading rooms, bounded waits. It is a ``Writer``
(``writer``: the single writer with group commit, whose batches ``batch`` writes) on the
connections of ``engine`` (on SQLite, the threads and their own connections of ``driver``),
with the schema glue in ``schema`` and the document list in ``listing``. The other modules
are read and maintenance queries grouped by the feature that needs them: ``history``
(versions, timeline, compaction), ``dump`` (moving documents between databases) and
``documents`` (soft deletes, purge, revoked tokens). Each takes a Store and uses its engine;
none of them writes behind the writer's back except the explicit maintenance commands they
document. The layer imports sqlalchemy, alembic and of collab only the leaves
(``collab.errors``, ``collab.config``, ``collab.clock``, ``collab.row``): never
``collab.sync``, ``collab.history``, ``collab.relay`` or ``collab.http``. (This file re-
exports the public names; importing it opens nothing.)
"""

from collab.store.core import (
    DocumentInfo,
    Loaded,
    Store,
    StoreClosed,
    check_url,
    now_ms,
    upgrade_schema,
)
from collab.store.documents import DocumentState, DocumentStore, TokenStore
from collab.store.dump import DocumentExists, DumpBatch, DumpStore
from collab.store.history import (
    DocumentHead,
    HistoryStore,
    MergedRun,
    NamedVersion,
    Storage,
    VersionSource,
)

__all__ = [
    "DocumentExists",
    "DocumentHead",
    "DocumentInfo",
    "DocumentState",
    "DocumentStore",
    "DumpBatch",
    "DumpStore",
    "HistoryStore",
    "Loaded",
    "MergedRun",
    "NamedVersion",
    "Storage",
    "Store",
    "StoreClosed",
    "check_url",
    "TokenStore",
    "VersionSource",
    "now_ms",
    "upgrade_schema",
]
