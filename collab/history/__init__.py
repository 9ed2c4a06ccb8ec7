"""The history layer: rows to documents, versions, the timeline, diff and blame, restore,
compaction and rich-text edits. Every module is PURE (no asyncio, aiohttp or sqlalchemy;
of collab only ``collab.errors``, ``collab.config``, ``collab.auth``, ``collab.clock``,
``collab.row``, ``collab.sync`` and its own modules) except ``service``, the one module
that does I/O: it fetches rows from ``collab.store`` and lets the pure modules decide.
``collab.sync`` never imports this layer.
"""
