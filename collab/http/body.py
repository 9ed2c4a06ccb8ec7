"""Reading request bodies: one size limit for every route.

``read(request, limit)`` enforces a route's size limit (413, ``MessageTooBig``); the
models that parse JSON bodies are in ``collab.http.models``, imported by the handlers that
take a body when they first run (pydantic is large; see that module).
"""

from __future__ import annotations

from aiohttp import web

from collab.errors import MessageTooBig

__all__ = ["MAX_JSON", "read"]

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
