"""The sync layer, PURE: the y-websocket wire codec, Yjs update and state-vector validation,
the varint reader they share, and the Room that decides what each message causes (replies,
broadcasts, rows to store) without sending anything. It imports no asyncio, aiohttp or
sqlalchemy, and of collab only ``collab.errors``, ``collab.config``, ``collab.auth``,
``collab.clock`` and its own modules; it never imports ``collab.history`` or any I/O layer.
"""
