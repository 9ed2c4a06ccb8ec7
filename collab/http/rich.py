"""Answering with rich text: a ProseMirror document as JSON, or as HTML.

Owns the formats the version, content and diff routes share for rich-text roots (the
pure ``collab.history.richtext`` and ``markup`` modules make the bodies); the version a
body shows travels in the headers, as for ``format=yjs``, so the JSON body is exactly a
ProseMirror document any editor can load.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from collab.clock import format_ms
from collab.http.errors import json_response

__all__ = ["RICH_FORMATS", "rich_response"]

RICH_FORMATS = ("prosemirror", "html")


def rich_response(document: Any, seq: int, created_ms: int) -> web.Response:
    """``document`` (ProseMirror JSON, or an HTML string) with ``X-Collab-Seq`` and
    ``X-Collab-Time``."""
    headers = {"X-Collab-Seq": str(seq), "X-Collab-Time": format_ms(created_ms)}
    if isinstance(document, str):
        return web.Response(
            text=document, content_type="text/html", charset="utf-8", headers=headers
        )
    return json_response(document, headers=headers)
