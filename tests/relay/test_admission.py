"""What a member may send (``collab.relay.admission``): read-only members' updates are
dropped, each member's updates and awareness are rate-limited, awareness is size-bound.
Run on real connections and a real store; only the socket under a connection is a
stand-in (``tests.relay.test_hub``)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from collab.config import Config, database_url
from collab.errors import MessageTooBig, RateLimited
from collab.relay.admission import admit_awareness, admit_update
from collab.relay.connection import Connection
from collab.relay.fanout import Stats
from collab.relay.limits import TokenBucket
from collab.store import Store
from tests.relay.test_hub import _Socket, _Wire


@pytest.fixture
async def store(config: Config) -> AsyncIterator[Store]:
    opened = Store(database_url(config.db))
    await opened.open()
    yield opened
    await opened.close()


def _member(name: str = "alice") -> Connection:
    return Connection(_Socket(), name, author=name, max_bytes=1 << 20, transport=_Wire())


async def test_an_update_from_a_read_only_member_is_dropped_uncounted(
    store: Store, config: Config
) -> None:
    """A reader's update is not admitted, raises nothing, and is not counted."""
    reader, stats = _member("reader"), Stats()
    reader.read_only = True
    assert admit_update(reader, store, config, stats) is False
    assert stats.updates_in == 0


async def test_updates_are_admitted_and_counted_until_the_bucket_is_empty(
    store: Store, config: Config
) -> None:
    """With a bucket of two, two updates pass (counted) and the third is refused."""
    member, stats = _member(), Stats()
    member.bucket = TokenBucket(0.001, 2.0, time.monotonic())
    assert admit_update(member, store, config, stats)
    assert admit_update(member, store, config, stats)
    with pytest.raises(RateLimited):
        admit_update(member, store, config, stats)
    assert stats.updates_in == 2


def test_awareness_up_to_the_size_bound_passes_and_larger_is_refused(config: Config) -> None:
    """``max_awareness_size`` bytes pass; one more is MessageTooBig (1009)."""
    member, stats = _member(), Stats()
    admit_awareness(member, config.max_awareness_size, config, stats)
    with pytest.raises(MessageTooBig):
        admit_awareness(member, config.max_awareness_size + 1, config, stats)


def test_an_awareness_flood_is_refused_and_counted(config: Config) -> None:
    """Past its awareness bucket a member is RateLimited (1013), and the refusal counted."""
    member, stats = _member(), Stats()
    member.awareness_bucket = TokenBucket(0.001, 1.0, time.monotonic())
    admit_awareness(member, 10, config, stats)
    with pytest.raises(RateLimited):
        admit_awareness(member, 10, config, stats)
    assert stats.awareness_limited == 1
