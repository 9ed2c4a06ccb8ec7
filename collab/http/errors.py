"""The one place an HTTP error becomes a response: ``{"error": "..."}`` JSON.

Routes raise, never build error responses: a ``CollabError`` answers with its own
``http_status`` (and ``Retry-After`` when it has one); aiohttp's own HTTP errors (an
unknown route, a method not allowed, a body over ``max_message_size``) answer as JSON on
``/api`` paths and unchanged elsewhere; anything else is logged with its traceback and
answers 500, saying only that it failed. As Starlette's ``ExceptionMiddleware``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from collab.errors import CollabError

__all__ = ["error_middleware", "json_response"]

log = logging.getLogger(__name__)


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """``data`` as JSON, non-ASCII text kept as it is."""
    return web.json_response(
        data, status=status, headers=headers, dumps=lambda obj: json.dumps(obj, ensure_ascii=False)
    )


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer the request with ``handler``, or with the JSON error it raised."""
    try:
        return await handler(request)
    except CollabError as exc:
        headers = None if exc.retry_after is None else {"Retry-After": str(exc.retry_after)}
        return json_response({"error": exc.message}, exc.http_status, headers)
    except web.HTTPException as exc:
        if exc.status < 400 or not request.path.startswith("/api/"):
            raise
        default = f"{exc.status}: {exc.reason}"
        message = exc.text if exc.text and exc.text != default else exc.reason.lower()
        headers = {k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After")}
        return json_response({"error": message}, exc.status, headers)
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return json_response({"error": "internal server error"}, 500)
