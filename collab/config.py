"""Server settings: one frozen dataclass, read from an injected mapping.

PURE: never reads ``os.environ`` itself; the CLI passes the environment in, tests pass a
dict. Every field is documented in the README (``tests/test_docs.py`` checks that).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

__all__ = ["Config", "database_url"]

_PREFIX = "COLLAB_"


@dataclass(frozen=True, slots=True)
class Config:
    """Every setting of a collab server, with its default."""

    host: str = "127.0.0.1"
    """Interface to bind."""
    port: int = 1234
    """TCP port to listen on."""
    db: str = "collab.db"
    """SQLite file path, or any SQLAlchemy async URL (``sqlite+aiosqlite:///...``)."""
    log_level: str = "info"
    """debug, info, warning or error."""
    max_message_size: int = 32 * 1024 * 1024
    """Largest WebSocket message accepted, in bytes; bigger ones close with 1009."""
    commit_interval: float = 0.05
    """Group-commit window in seconds: an update is committed at most this long (plus
    the commit itself) after it arrives."""
    checkpoint_updates: int = 1000
    """Write a checkpoint after this many updates to a document..."""
    checkpoint_bytes: int = 1024 * 1024
    """...or after this many bytes of updates, whichever comes first."""
    room_grace: float = 10.0
    """Seconds an empty room stays loaded before it is checkpointed and unloaded."""
    heartbeat: float = 30.0
    """Keepalive (0: off): a sweep every ``heartbeat / 2`` seconds pings a connection quiet
    since the last sweep, and drops it (1006) if it is still quiet at the next one."""
    outbox_max_bytes: int = 16 * 1024 * 1024
    """Bytes queued to one slow connection before it is closed with 1013."""
    store_max_backlog: int = 256 * 1024 * 1024
    """Bytes of updates waiting for the database before writers are turned away (1013)."""
    store_stalled_backlog: int = 1024 * 1024
    """Bytes of updates waiting while the database refuses commits (full disk, lock, outage)
    before writers are turned away (1013): a small bound, as nothing is being stored."""
    db_timeout: float = 5.0
    """Seconds any wait on the database may take (room loads, reads, document creation,
    readiness) before it fails: a join closes with 1013, HTTP answers 503."""
    max_room_name: int = 512
    """Longest room name accepted, in characters."""
    auth_secret: str = ""
    """Shared secret for HS256 tokens; setting it (or ``auth_public_key``) turns auth on."""
    auth_public_key: str = ""
    """Path to a PEM public key for tokens minted by another application."""
    allow_open: bool = False
    """Allow running without auth on a non-localhost address."""
    revocation_poll: float = 5.0
    """Seconds between checks of revoked tokens against live connections (and of
    deleted documents against loaded rooms, for deletions made by another server)."""
    deleted_retention: float = 30 * 86400.0
    """Seconds a deleted document stays restorable before ``collab purge`` (or a server
    start) removes it for good."""
    allowed_origins: str = ""
    """Comma-separated WebSocket ``Origin`` values accepted; empty accepts any."""
    handshake_timeout: float = 10.0
    """Seconds a connection has, after connecting or after its previous response, to send a
    complete request line and headers (a WebSocket upgrade included); then it is closed.
    Also how long an idle keep-alive connection stays open. Must be more than 0 (it is
    aiohttp's keep-alive timeout, where 0 means no deadline for a first request's head
    and no keep-alive at all)."""
    listen_backlog: int = 1024
    """Connections the kernel queues for the server to accept (capped by
    ``net.core.somaxconn``); a burst larger than this is delayed by SYN retries."""
    max_connections: int = 10_000
    """Open WebSocket connections accepted in total; more are refused with 1013."""
    max_room_connections: int = 1_000
    """Members per room; more are refused with 1013."""
    max_updates_per_second: float = 200.0
    """Sustained document updates per second per connection; faster closes with 1013."""
    update_burst: int = 2_000
    """Updates a connection may send at once before the rate limit applies."""
    max_awareness_per_second: float = 100.0
    """Sustained awareness messages (cursors, presence) per second per connection; faster
    closes with 1013. Editors send one per cursor move: a person never gets near this."""
    awareness_burst: int = 500
    """Awareness messages a connection may send at once before that limit applies."""
    max_awareness_size: int = 64 * 1024
    """Largest awareness message accepted, in bytes; a bigger one closes with 1009."""
    max_document_size: int = 256 * 1024 * 1024
    """Largest document, in bytes of stored state; a bigger edit closes with 4413."""
    certfile: str = ""
    """TLS certificate (PEM) to serve wss:// and https:// directly."""
    keyfile: str = ""
    """TLS private key (PEM) matching ``certfile``."""
    log_format: str = "text"
    """``text`` or ``json`` (one JSON object per line)."""
    webhook_url: str = ""
    """Comma-separated URLs that receive webhook POSTs; empty turns webhooks off."""
    webhook_secret: str = ""
    """HMAC-SHA256 key that signs every webhook request (``X-Collab-Signature``)."""
    webhook_debounce: float = 2.0
    """Seconds a document's changes are gathered into one ``document.changed`` event."""
    webhook_timeout: float = 10.0
    """Seconds one webhook request may take before it counts as failed."""
    webhook_attempts: int = 5
    """Tries per webhook event before it is logged and dropped."""
    webhook_backoff: float = 1.0
    """Seconds before the first retry of a failed webhook; doubles with each retry."""
    webhook_queue: int = 1000
    """Webhook events queued per endpoint; when full, the oldest is dropped."""
    redis: str = ""
    """Redis URL; set it on every node to run several nodes that share the rooms."""
    compact_after: float = 7 * 86400.0
    """Seconds: ``collab compact`` merges only updates at least this old."""
    compact_granularity: float = 60.0
    """Seconds: compaction merges one author's consecutive updates into steps shorter
    than this, the finest the timeline of compacted history can go."""

    @property
    def auth_enabled(self) -> bool:
        return bool(self.auth_secret or self.auth_public_key)

    @property
    def origins(self) -> frozenset[str]:
        return frozenset(o.strip() for o in self.allowed_origins.split(",") if o.strip())

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str],
        file: Mapping[str, Any] | None = None,
        **overrides: Any,
    ) -> Config:
        """Build a Config: ``overrides`` (flags) win over ``COLLAB_*`` variables, which
        win over ``file`` (a parsed TOML table), which wins over the defaults.

        Overrides whose value is ``None`` are ignored, so argparse results can be passed
        straight in.

        Raises:
            ValueError: an unknown key in ``file``, or a value of the wrong type.
        """
        names = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, value in (file or {}).items():
            field = names.get(key.replace("-", "_"))
            if field is None:
                raise ValueError(f"unknown setting {key!r} in the config file")
            values[field.name] = _parse(field, value) if isinstance(value, str) else value
        for field in names.values():
            raw = environ.get(_PREFIX + field.name.upper())
            if raw is not None:
                values[field.name] = _parse(field, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def replace(self, **changes: Any) -> Config:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


def _parse(field: dataclasses.Field[Any], raw: str) -> Any:
    kind = field.type if isinstance(field.type, str) else field.type.__name__
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "bool":
            if raw.strip().lower() in ("1", "true", "yes", "on"):
                return True
            if raw.strip().lower() in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(raw)
    except ValueError:
        raise ValueError(f"{_PREFIX}{field.name.upper()}: expected {kind}, got {raw!r}") from None
    return raw


def database_url(db: str) -> str:
    """Turn the ``db`` setting into an SQLAlchemy async URL (a bare path means SQLite)."""
    if "://" in db:
        return db
    return f"sqlite+aiosqlite:///{db}"
