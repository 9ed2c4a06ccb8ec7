"""Tokens and permissions, without a server."""

from __future__ import annotations

import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from collab.auth import OPEN, Access, Verifier, mint
from collab.errors import Unauthorized

SECRET = "s3cret-for-tests-only-0123456789abcdef"


def test_minted_token_round_trips() -> None:
    """A minted token verifies to its user, name, rules and id."""
    token = mint(SECRET, user_id="u1", name="Ann", docs=[("team/*", Access.WRITE)])
    identity = Verifier(SECRET).verify(token)
    assert (identity.user_id, identity.name, identity.author) == ("u1", "Ann", "Ann")
    assert identity.access("team/notes") is Access.WRITE
    assert identity.access("other") is Access.NONE
    assert identity.token_id


def test_first_matching_rule_decides() -> None:
    """Rules are matched in order; the first match wins."""
    token = mint(SECRET, user_id="u", docs=[("team/secret", Access.NONE), ("team/*", Access.READ)])
    identity = Verifier(SECRET).verify(token)
    assert identity.access("team/secret") is Access.NONE
    assert identity.access("team/a/b") is Access.READ


@pytest.mark.parametrize(
    ("token", "message"),
    [
        (None, "missing token"),
        ("", "missing token"),
        ("not.a.jwt", "invalid token"),
        (mint("other-secret-0123456789abcdef0123", user_id="u", docs=[]), "invalid token"),
        (
            mint(SECRET, user_id="u", docs=[], expires_in=60, now=time.time() - 3600),
            "token expired",
        ),
        (jwt.encode({"name": "no subject"}, SECRET, algorithm="HS256"), "invalid token"),
        (
            jwt.encode({"sub": "u", "docs": [{"pattern": "*", "access": "root"}]}, SECRET),
            "invalid access",
        ),
    ],
    ids=["none", "empty", "garbage", "wrong-secret", "expired", "no-sub", "bad-access"],
)
def test_bad_tokens_are_unauthorized(token: str | None, message: str) -> None:
    """Missing, malformed, foreign, expired or ill-formed tokens raise Unauthorized (4401)."""
    with pytest.raises(Unauthorized, match=message) as info:
        Verifier(SECRET).verify(token)
    assert info.value.close_code == 4401


def test_public_key_tokens() -> None:
    """Tokens signed by another application's private key verify with its public key."""
    private = ec.generate_private_key(ec.SECP256R1())
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    token = jwt.encode(
        {"sub": "app-user", "docs": [{"pattern": "*", "access": "read"}]}, private, "ES256"
    )
    identity = Verifier(None, public_pem).verify(token)
    assert identity.access("x") is Access.READ
    with pytest.raises(Unauthorized):
        Verifier(SECRET).verify(token)


def test_open_identity_may_write_everything() -> None:
    """Without auth, everyone may write every room."""
    assert OPEN.access("anything/at/all") is Access.WRITE


@pytest.mark.parametrize("subject", ["", "   ", "\t"], ids=["empty", "spaces", "tab"])
def test_a_token_without_a_subject_is_unauthorized(subject: str) -> None:
    """A validly signed token whose ``sub`` is empty or blank is refused (4401): its
    author would otherwise fall back to what the client claims."""
    token = jwt.encode({"sub": subject, "docs": [{"pattern": "*"}]}, SECRET, algorithm="HS256")
    with pytest.raises(Unauthorized) as info:
        Verifier(SECRET).verify(token)
    assert info.value.close_code == 4401


def test_mint_refuses_an_empty_user_id() -> None:
    """``mint`` will not make a token nobody can be the author of."""
    with pytest.raises(ValueError, match="user id"):
        mint(SECRET, user_id=" ", docs=[("*", Access.WRITE)])


def test_with_auth_the_token_is_the_author() -> None:
    """With a token, its name (else its user id) is the author whatever the client
    claims; on an open server the first non-empty claim is, else nobody."""
    named = Verifier(SECRET).verify(mint(SECRET, user_id="u1", name="Ann", docs=[]))
    unnamed = Verifier(SECRET).verify(mint(SECRET, user_id="u2", name="  ", docs=[]))
    assert named.author_of("Mallory", "Eve") == "Ann"
    assert unnamed.author_of("Mallory") == "u2"
    assert named.author_of() == "Ann"
    assert OPEN.author_of("", None, "Bo", "Cy") == "Bo"
    assert OPEN.author_of(None, "") is None
