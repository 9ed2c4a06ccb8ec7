"""Who is connecting, and what they may do with which documents.

PURE: decides from a token string and a room name; never reads a socket or the database.
Tokens are JWTs (PyJWT), signed with the server's shared secret (HS256) or, for tokens
minted by a team's own application, verified with its public key (RS256/ES256/EdDSA).
PyJWT (and the ``cryptography`` package it loads, about 9 MB of memory) is imported by
the first ``Verifier``, ``mint`` or ``token_id_of``, so a server without authentication
never loads it.

Claims collab reads:

- ``sub``: the user's id (required, a non-empty string: with auth on, a token's name or
  else its subject is the author of its edits, never what the client claims);
- ``name``: a display name (optional; history shows it as the author);
- ``docs``: a list of ``{"pattern": "team/*", "access": "write" | "read" | "none"}``
  rules, matched in order against the room name with shell-style wildcards (``*``
  matches ``/`` too); the first match decides, no match means no access;
- ``exp`` (optional) and ``jti`` (an id, so the token can be revoked);
- ``admin`` (optional, ``true``): may revoke tokens (``POST /api/tokens/revoke``).
"""

from __future__ import annotations

import fnmatch
import secrets
import time
from dataclasses import dataclass
from enum import IntEnum
from types import ModuleType
from typing import Any

from collab.errors import Unauthorized

__all__ = ["OPEN", "Access", "Identity", "Rule", "Verifier", "mint", "token_id_of"]

_LEEWAY_SECONDS = 10
_ASYMMETRIC = ["RS256", "RS384", "RS512", "ES256", "ES384", "EdDSA"]


def _jwt() -> ModuleType:
    import jwt

    return jwt


class Access(IntEnum):
    """What a member may do in a room, in increasing order."""

    NONE = 0
    READ = 1
    WRITE = 2


@dataclass(frozen=True, slots=True)
class Rule:
    """``access`` to every room whose name matches ``pattern``."""

    pattern: str
    access: Access


@dataclass(frozen=True, slots=True)
class Identity:
    """A verified user, or the anonymous user of an open server."""

    user_id: str | None
    name: str | None
    rules: tuple[Rule, ...]
    expires: float | None = None
    token_id: str | None = None
    admin: bool = False
    """May revoke tokens (the ``admin`` claim; everyone on an open server)."""

    def access(self, room: str) -> Access:
        """The access this identity has to ``room``: the first matching rule decides."""
        for rule in self.rules:
            if fnmatch.fnmatchcase(room, rule.pattern):
                return rule.access
        return Access.NONE

    @property
    def author(self) -> str | None:
        """What history records as the author of this identity's edits: for a verified
        token its name, else its user id (never empty); ``None`` on an open server."""
        return self.name or self.user_id

    def author_of(self, *claimed: object) -> str | None:
        """The one rule for who authored an edit: with auth on, the token's author,
        whatever the client claims; on an open server, the first non-empty string the
        client ``claimed`` (``?user=``, a body's ``user``), else ``None``.
        """
        if self.user_id is not None:
            return self.author
        return next((c for c in claimed if isinstance(c, str) and c), None)


OPEN = Identity(None, None, (Rule("*", Access.WRITE),), admin=True)
"""Everyone, when the server runs without auth."""


class Verifier:
    """Checks tokens against the server's secret and/or a public key.

    Args:
        secret: the shared HS256 secret, if any.
        public_key: a PEM public key for tokens minted elsewhere, if any.
    """

    def __init__(self, secret: str | None, public_key: str | None = None) -> None:
        if not secret and not public_key:
            raise ValueError("a secret or a public key is needed")
        self._jwt = _jwt()
        self._keys: list[tuple[Any, list[str]]] = []
        if secret:
            self._keys.append((secret, ["HS256"]))
        if public_key:
            self._keys.append((public_key, _ASYMMETRIC))

    def verify(self, token: str | None, now: float | None = None) -> Identity:
        """Decode and check ``token``.

        Raises:
            Unauthorized: missing, malformed, badly signed or expired (close code 4401).
        """
        if not token:
            raise Unauthorized("missing token")
        claims: dict[str, Any] | None = None
        error = "invalid token"
        jwt = self._jwt
        for key, algorithms in self._keys:
            try:
                claims = jwt.decode(
                    token,
                    key,
                    algorithms=algorithms,
                    leeway=_LEEWAY_SECONDS,
                    options={"require": ["sub"], "verify_iat": False},
                )
                break
            except jwt.ExpiredSignatureError:
                error = "token expired"
            except jwt.PyJWTError:
                continue
        if claims is None:
            raise Unauthorized(error)
        return _identity(claims)


def _identity(claims: dict[str, Any]) -> Identity:
    subject = claims["sub"]
    # The subject is who history records when the token has no name: an empty one would
    # let the client's own claims (?user=, awareness) pick the author instead.
    if not isinstance(subject, str) or not subject.strip():
        raise Unauthorized("token has no subject")
    rules = []
    for raw in claims.get("docs") or []:
        if not isinstance(raw, dict) or not isinstance(raw.get("pattern"), str):
            raise Unauthorized("invalid docs claim")
        try:
            access = Access[str(raw.get("access", "write")).upper()]
        except KeyError:
            raise Unauthorized("invalid access in docs claim") from None
        rules.append(Rule(raw["pattern"], access))
    raw_name = claims.get("name")
    name = str(raw_name).strip()[:255] if raw_name else ""
    exp = claims.get("exp")
    return Identity(
        user_id=subject,
        name=name or None,
        rules=tuple(rules),
        expires=float(exp) if exp is not None else None,
        token_id=str(claims["jti"]) if claims.get("jti") else None,
        admin=claims.get("admin") is True,
    )


def token_id_of(token: str) -> tuple[str, float | None]:
    """The id (``jti``) and expiry (``exp``) a token claims, read WITHOUT checking its
    signature: only to name a token to revoke, never to trust it.

    Raises:
        ValueError: not a JWT, or one without a ``jti``.
    """
    jwt = _jwt()
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise ValueError("not a token") from None
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti:
        raise ValueError("the token has no jti claim, so it cannot be revoked")
    exp = claims.get("exp")
    return jti, float(exp) if isinstance(exp, int | float) else None


def mint(
    secret: str,
    *,
    user_id: str,
    name: str | None = None,
    docs: list[tuple[str, Access]],
    expires_in: float | None = None,
    now: float | None = None,
    admin: bool = False,
) -> str:
    """Make an HS256 token for ``user_id`` with the given document rules (and, with
    ``admin``, the right to revoke tokens).

    Raises:
        ValueError: ``user_id`` is empty or only whitespace.
    """
    if not user_id.strip():
        raise ValueError("the user id must not be empty")
    issued = time.time() if now is None else now
    claims: dict[str, Any] = {
        "sub": user_id,
        "iat": int(issued),
        "jti": secrets.token_hex(8),
        "docs": [{"pattern": p, "access": a.name.lower()} for p, a in docs],
    }
    if name:
        claims["name"] = name
    if expires_in is not None:
        claims["exp"] = int(issued + expires_in)
    if admin:
        claims["admin"] = True
    token: str = _jwt().encode(claims, secret, algorithm="HS256")
    return token
