"""Helpers for the HTTP tests: one request as a test makes it, and tokens for a server
that runs with ``SECRET``."""

from __future__ import annotations

from typing import Any

import aiohttp
import jwt

from collab.auth import Access, mint
from tests.conftest import Server

SECRET = "docs-api-tests-secret-0123456789abcdef"


def token(
    pattern: str = "*", access: Access = Access.WRITE, user: str = "u1", **kwargs: Any
) -> str:
    return mint(SECRET, user_id=user, docs=[(pattern, access)], **kwargs)


def jti_of(encoded: str) -> str:
    return str(jwt.decode(encoded, options={"verify_signature": False})["jti"])


async def call(
    session: aiohttp.ClientSession,
    server: Server,
    method: str,
    path: str,
    body: Any = None,
    *,
    token: str | None = None,
    **kwargs: Any,
) -> tuple[int, Any]:
    """One HTTP request; the answer as JSON, text or bytes by its content type."""
    headers = kwargs.pop("headers", {})
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if body is not None and "data" not in kwargs:
        kwargs["json"] = body
    async with session.request(method, server.http + path, headers=headers, **kwargs) as response:
        if response.content_type == "application/json":
            return response.status, await response.json()
        if response.content_type == "text/plain":
            return response.status, await response.text()
        return response.status, await response.read()
