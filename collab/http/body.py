"""Reading request bodies: one size limit for every route.

``read(request, limit)`` enforces a route's size limit (413, ``MessageTooBig``); the
models that parse JSON bodies are in ``collab.http.models``, which a handler that takes a
body imports when it first runs (pydantic is large; see that module), after
``await load_models()`` has imported it in a worker thread: an import reads files, and a
fifth of a second of that in the event loop would stall every room.
"""

from __future__ import annotations

import asyncio
import importlib
import sys

from aiohttp import web

from collab.errors import MessageTooBig

__all__ = ["MAX_JSON", "load_models", "read"]

MAX_JSON = 64 * 1024
"""The size limit of every JSON body that carries no document content."""


async def read(request: web.Request, limit: int) -> bytes:
    """The request's body, at most ``limit`` bytes (and never more than the app's
    ``client_max_size``, ``max_message_size``, so every route says the same).

    Raises:
        MessageTooBig: the body is larger (413).
    """
    limit = min(limit, request.client_max_size)
    if request.content_length is not None and request.content_length > limit:
        raise MessageTooBig(f"request body larger than {limit} bytes")
    body = await request.read()
    if len(body) > limit:
        raise MessageTooBig(f"request body larger than {limit} bytes")
    return body


_MODELS = "collab.http.models"


async def load_models() -> None:
    """Import ``collab.http.models`` (and pydantic) off the event loop, the first time."""
    if _MODELS not in sys.modules:
        await asyncio.to_thread(importlib.import_module, _MODELS)
