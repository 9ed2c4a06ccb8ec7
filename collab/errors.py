"""Close codes, HTTP statuses and the one exception tree that carries them.

Every error a connection or a request can end with carries exactly one WebSocket close
code and one HTTP status, so the socket handler (``collab.http.websocket``) needs a single
``except CollabError`` to close with the right code, and the HTTP layer a single middleware
(``collab.http.errors``) to answer with the right status. Codes 4400-4499 are reserved for
*permanent* refusals: the y-websocket client stops reconnecting on them and retries on
everything else, so never use them for transient trouble.

PURE: imports nothing but the standard library.
"""

from enum import IntEnum

__all__ = [
    "BadRequest",
    "BadRoomName",
    "CloseCode",
    "CollabError",
    "Conflict",
    "DocumentDeleted",
    "DocumentTooLarge",
    "Forbidden",
    "HistoryError",
    "MessageTooBig",
    "MissingStructs",
    "NotFound",
    "Overloaded",
    "ProtocolError",
    "RateLimited",
    "RoomPoisoned",
    "SlowConsumer",
    "StaleLineage",
    "StoreUnavailable",
    "Unauthorized",
    "UnsupportedData",
]


class CloseCode(IntEnum):
    """WebSocket close codes used by collab (RFC 6455 section 7.4 plus the 4xxx range)."""

    NORMAL = 1000
    GOING_AWAY = 1001  # not sent by collab: a browser closing its tab sends it
    SERVICE_RESTART = 1012  # server shutdown or restart: reconnect, here or to another node
    UNSUPPORTED_DATA = 1003  # text frame
    INVALID_PAYLOAD = 1007  # malformed Yjs message, update or awareness
    MESSAGE_TOO_BIG = 1009
    # Recorded, never sent (RFC 6455 reserves it for "closed without a close frame"): a
    # peer lost mid-send, or dropped by the keepalive sweep.
    ABNORMAL_CLOSURE = 1006
    INTERNAL_ERROR = 1011
    TRY_AGAIN_LATER = 1013  # slow consumer, or the store is too far behind
    BAD_REQUEST = 4400  # invalid room name: permanent, the client must not retry
    UNAUTHORIZED = 4401  # missing, invalid, expired or revoked token
    FORBIDDEN = 4403  # no access to the room, or Origin not allowed
    DOCUMENT_DELETED = 4404  # the document was deleted (restorable by POST .../undelete)
    DOCUMENT_TOO_LARGE = 4413  # the edit would grow the document past its limit
    LINEAGE_RETIRED = 4410  # the client holds a replaced history of the document
    RESET_CONNECTION = 4205  # Hocuspocus's: too much sent for documents not authenticated


class CollabError(Exception):
    """Base of every error that ends a connection or a request with a known outcome.

    ``message`` is the whole explanation (an HTTP error's ``{"error": ...}``); ``reason`` is
    its close-frame form. ``retry_after`` (seconds), when set, is sent as ``Retry-After``.
    """

    close_code: CloseCode = CloseCode.INTERNAL_ERROR
    http_status: int = 500
    retry_after: int | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        # Close reasons travel in a control frame: at most 123 bytes of UTF-8.
        self.reason = message.encode("ascii", "replace")[:123].decode("ascii")


class ProtocolError(CollabError):
    """A binary message that is not valid y-websocket / Yjs data."""

    close_code = CloseCode.INVALID_PAYLOAD
    http_status = 400


class MissingStructs(ProtocolError):
    """A Yjs update that depends on structs the room's document lacks (yrs would keep it
    pending, which is where it crashed under fuzzing). A client that sends one holds what
    is missing: the room asks it to resync instead of closing it."""


class UnsupportedData(CollabError):
    """A text frame: the y-websocket protocol is binary only."""

    close_code = CloseCode.UNSUPPORTED_DATA
    http_status = 400


class SlowConsumer(CollabError):
    """The connection's outbound queue overflowed: it cannot keep up with its room."""

    close_code = CloseCode.TRY_AGAIN_LATER
    http_status = 503


class Overloaded(CollabError):
    """The store is too far behind to accept more updates; the client retries later."""

    close_code = CloseCode.TRY_AGAIN_LATER
    http_status = 503
    retry_after = 1


class RoomPoisoned(CollabError):
    """The room's document failed inside yrs (a Rust panic) and may be half-changed.

    The hub throws the room away and reloads it from the store; every member is closed
    with 1011 and reconnects to the reloaded room, re-sending what it holds (see
    ``docs/reliability.md``).
    """

    close_code = CloseCode.INTERNAL_ERROR


class StoreUnavailable(CollabError):
    """The database did not answer within ``db_timeout``, or failed: the store cannot read
    or create what was asked right now. Transient (the client retries, HTTP says 503)."""

    close_code = CloseCode.TRY_AGAIN_LATER
    http_status = 503
    retry_after = 1


class RateLimited(CollabError):
    """The connection sends updates faster than ``max_updates_per_second`` allows."""

    close_code = CloseCode.TRY_AGAIN_LATER
    http_status = 429
    retry_after = 1


class MessageTooBig(CollabError):
    """A message or request body over a size limit (aiohttp enforces ``max_message_size``
    itself; each HTTP route may set a lower limit for its body)."""

    close_code = CloseCode.MESSAGE_TOO_BIG
    http_status = 413


class BadRoomName(CollabError):
    """The room name in the URL is empty, too long or contains control characters."""

    close_code = CloseCode.BAD_REQUEST
    http_status = 400


class Unauthorized(CollabError):
    """No valid token: missing, malformed, badly signed, expired or revoked."""

    close_code = CloseCode.UNAUTHORIZED
    http_status = 401


class Forbidden(CollabError):
    """A valid identity without access to this room (or from a disallowed Origin)."""

    close_code = CloseCode.FORBIDDEN
    http_status = 403


class DocumentDeleted(CollabError):
    """The room's document is deleted: its members are closed and joins refused until it
    is undeleted. Permanent for the client (retrying cannot help), hence a 4xxx code."""

    close_code = CloseCode.DOCUMENT_DELETED
    http_status = 404


class StaleLineage(CollabError):
    """The update carries structs of a history the document retired (it was replaced or
    started over: ``collab.sync.lineage``). The client's copy is of another document;
    retrying can never merge it, hence a 4xxx code (the y-websocket client stops)."""

    close_code = CloseCode.LINEAGE_RETIRED
    http_status = 409


class DocumentTooLarge(CollabError):
    """The update would make the document larger than ``max_document_size``; retrying the
    same edit cannot succeed, hence a 4xxx code."""

    close_code = CloseCode.DOCUMENT_TOO_LARGE
    http_status = 413


class HistoryError(CollabError):
    """A request that cannot be answered as asked: a bad parameter or body, something
    that does not exist, or a clash with what is stored. Raised by the history code and
    the HTTP routes; never closes a socket (its close code is only the tree's default)."""

    close_code = CloseCode.BAD_REQUEST
    http_status = 400


class BadRequest(HistoryError):
    """A malformed parameter or body: a time, a format, a root that is not text, JSON."""

    http_status = 400


class NotFound(HistoryError):
    """No such document, version, root or named version (or route)."""

    http_status = 404


class Conflict(HistoryError):
    """The request clashes with what is stored (a named version that exists)."""

    http_status = 409
