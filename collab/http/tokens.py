"""Who the caller is, and token revocation: ``GET /api/me``, ``POST /api/tokens/revoke``.

``/api/me`` says who the caller is and what they may do with a room, so a read-only
document can look read-only in the browser. A revocation (admin tokens only) is stored,
applied to this server's sockets at once (4401) and to every other server's within
``revocation_poll``. Handlers raise; ``errors.py`` answers. No SQL here (``collab.store``).
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from collab.auth import token_id_of
from collab.errors import BadRequest, Forbidden
from collab.http.body import MAX_JSON, load_models, read
from collab.http.errors import json_response
from collab.http.openapi import Route
from collab.http.state import HUB, VERIFIER, close_revoked, identify
from collab.store import TokenStore

__all__ = ["ROUTES"]

log = logging.getLogger(__name__)

_MAX_JTI = 255


async def _me(request: web.Request) -> web.StreamResponse:
    """``GET /api/me?room=``: the caller's identity, and their access to ``room`` if given."""
    identity = identify(request)
    body: dict[str, Any] = {
        "auth": request.app[VERIFIER] is not None,
        "user": identity.user_id,
        "name": identity.name,
    }
    room = request.query.get("room")
    if room is not None:
        body["access"] = identity.access(room).name.lower()
    return json_response(body)


async def _revoke(request: web.Request) -> web.StreamResponse:
    await load_models()  # pydantic, imported off the loop once
    from collab.http.models import RevokeToken, parse

    identity = identify(request)
    if not identity.admin:
        raise Forbidden("only an admin token may revoke tokens")
    data = parse(RevokeToken, await read(request, MAX_JSON))
    jti, expires_ms = data.jti, None
    if (jti is None) == (data.token is None):
        raise BadRequest('give the token\'s id, {"jti": "..."}, or the token, {"token": "..."}')
    if data.token is not None:
        try:
            jti, expires = token_id_of(data.token)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        expires_ms = None if expires is None else int(expires * 1000)
    assert jti is not None
    if not 0 < len(jti) <= _MAX_JTI:
        raise BadRequest(f"bad jti: 1 to {_MAX_JTI} characters")
    hub = request.app[HUB]
    fresh = await TokenStore(hub.store).revoke(jti, expires_ms)
    hub.revoked.add(jti)
    closed = close_revoked(request.app)
    log.info("revoked token %r by %r: %d connections closed", jti, identity.author, closed)
    return json_response({"jti": jti, "revoked": True, "already": not fresh, "closed": closed})


ROUTES = (
    Route(
        "GET", "/api/me", _me,
        "Who the caller is, and their access to ?room=", "auth",
        (200, "identity"), (401,), (("room", "a document name"),),
    ),
    Route(
        "POST", "/api/tokens/revoke", _revoke,
        "Revoke a token now: its sockets close with 4401, its requests get 401 "
        "(admin tokens only; every server applies it within revocation_poll)", "auth",
        (200, "revoked"), (400, 401, 403, 413, 503), body="RevokeToken",
    ),
)  # fmt: skip
