"""The application's shared state: its keys, who is asking, and what they may do.

A leaf of the HTTP layer: route modules and the app factory import it, it imports no route
module, so nothing needs the factory (``collab.http.app``) to answer a request.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from aiohttp import web

from collab.auth import OPEN, Access, Identity, Verifier
from collab.config import Config
from collab.errors import CloseCode, Forbidden, Overloaded, Unauthorized
from collab.relay.connection import Connection
from collab.relay.hub import Hub
from collab.relay.metrics import Metrics
from collab.relay.session import Acknowledgements, Session
from collab.sync.room import validate_room_name

__all__ = [
    "ACKS",
    "CONFIG",
    "CONNECTIONS",
    "DRAINING",
    "HUB",
    "METRICS",
    "SESSIONS",
    "VERIFIER",
    "admit_member",
    "author",
    "authorize",
    "close_revoked",
    "identify",
    "identify_token",
    "verifier_for",
]

log = logging.getLogger(__name__)

CONFIG = web.AppKey("config", Config)
HUB = web.AppKey("hub", Hub)
METRICS = web.AppKey("metrics", Metrics)
VERIFIER: web.AppKey[Verifier | None] = web.AppKey("verifier")
CONNECTIONS: web.AppKey[set[Connection]] = web.AppKey("connections")  # every live socket
DRAINING: web.AppKey[asyncio.Event] = web.AppKey("draining")  # set when shutdown starts
# Every open document of every Hocuspocus socket (each socket itself is in CONNECTIONS).
SESSIONS: web.AppKey[set[Session]] = web.AppKey("sessions")
ACKS = web.AppKey("acks", Acknowledgements)  # Hocuspocus SyncStatus, sent after commits


def verifier_for(config: Config) -> Verifier | None:
    if not config.auth_enabled:
        return None
    public_key = None
    if config.auth_public_key:
        public_key = Path(config.auth_public_key).read_text()
    return Verifier(config.auth_secret or None, public_key)


def identify(request: web.Request) -> Identity:
    """The identity behind an HTTP or WebSocket request (``?token=`` or a Bearer header).

    Raises:
        Unauthorized: auth is on and the token is missing, invalid, expired or revoked.
    """
    token = request.query.get("token")
    header = request.headers.get("Authorization", "")
    if not token and header.lower().startswith("bearer "):
        token = header[7:].strip()
    return identify_token(request.app, token)


def identify_token(app: web.Application, token: str | None) -> Identity:
    """The identity a token stands for (with auth off, everyone is ``OPEN``, whatever
    the token): the same verification, expiry and revocation for every way a token
    arrives (query, header, or a Hocuspocus Auth message).

    Raises:
        Unauthorized: auth is on and the token is missing, invalid, expired or revoked.
    """
    verifier = app[VERIFIER]
    if verifier is None:
        return OPEN
    identity = verifier.verify(token)
    if identity.token_id is not None and identity.token_id in app[HUB].revoked:
        raise Unauthorized("token revoked")
    return identity


def admit_member(app: web.Application, name: str, identity: Identity) -> Access:
    """What ``identity`` may do in room ``name``, checked before the room loads.

    Raises:
        BadRoomName: not a valid room name.
        Forbidden: no access to this document.
        Overloaded: the room already has ``max_room_connections`` members.
    """
    config = app[CONFIG]
    validate_room_name(name, config.max_room_name)
    access = identity.access(name)
    if access is Access.NONE:
        raise Forbidden("no access to this document")
    room = app[HUB].rooms.get(name)
    if room is not None and len(room.members) >= config.max_room_connections:
        raise Overloaded("room is full, retry later")
    return access


def authorize(request: web.Request, name: str, need: Access) -> Identity:
    """Check the room name ``name`` and that the caller has ``need`` access to it.

    Raises:
        BadRoomName: not a valid room name (400).
        Unauthorized: no or bad token (401).
        Forbidden: no access, or read-only when writing (403).
    """
    validate_room_name(name, request.app[CONFIG].max_room_name)
    identity = identify(request)
    access = identity.access(name)
    if access is Access.NONE or access < need:
        raise Forbidden("no access to this document" if access is Access.NONE else "read-only")
    return identity


def author(request: web.Request, identity: Identity, claimed: str | None) -> str | None:
    """Who authors an HTTP edit, by the one rule (``Identity.author_of``): the token's
    author when auth is on; else the body's ``user``, then the query's ``?user=``."""
    return identity.author_of(claimed, request.query.get("user"))


def close_revoked(app: web.Application) -> int:
    """Close every live socket whose token is revoked (``hub.revoked``) with 4401.

    Returns:
        How many were closed.
    """
    revoked = app[HUB].revoked
    members: list[Connection] = [*app[CONNECTIONS], *app[SESSIONS]]
    closed = 0
    for conn in members:
        if conn.token_id is not None and conn.token_id in revoked and not conn.closing:
            conn.close(CloseCode.UNAUTHORIZED, "token revoked")
            closed += 1
    if closed:
        log.info("closed %d connections whose token was revoked", closed)
    return closed
