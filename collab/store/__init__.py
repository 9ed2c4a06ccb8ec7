"""Persistence: the only package that runs SQL.

``core`` holds the Store: one writer with group commit, loading rooms, the schema. The
other modules are read and maintenance queries grouped by the feature that needs them:
``history`` (versions, timeline, compaction), ``dump`` (moving documents between
databases) and ``documents`` (soft deletes, purge, revoked tokens). Each takes a Store
and uses its engine; none of them writes behind the writer's back except the explicit
maintenance commands they document. The layer imports sqlalchemy, alembic and of collab
only ``collab.errors``, ``collab.config`` and ``collab.clock``: never ``collab.sync``,
``collab.history``, ``collab.relay`` or ``collab.http``. (This file re-exports the public
names; importing it opens nothing.)
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
