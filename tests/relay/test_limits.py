"""TokenBucket: a burst at once, then a sustained rate, with the clock passed in."""

from __future__ import annotations

from collab.relay.limits import TokenBucket


def test_a_full_bucket_allows_its_burst_at_once() -> None:
    """A new bucket allows ``burst`` events at the same instant, and refuses the next."""
    bucket = TokenBucket(rate=1.0, burst=3.0, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]


def test_tokens_come_back_at_the_rate() -> None:
    """An empty bucket allows one more event after ``1 / rate`` seconds, not before."""
    bucket = TokenBucket(rate=2.0, burst=1.0, now=0.0)
    assert bucket.take(0.0)
    assert not bucket.take(0.4)
    assert bucket.take(0.5)


def test_the_bucket_never_holds_more_than_its_burst() -> None:
    """A long pause refills the bucket only up to ``burst``."""
    bucket = TokenBucket(rate=10.0, burst=2.0, now=0.0)
    assert [bucket.take(1000.0) for _ in range(3)] == [True, True, False]


def test_a_costly_event_takes_several_tokens() -> None:
    """``cost`` spends that many tokens; an event costing more than is left is refused and
    spends nothing."""
    bucket = TokenBucket(rate=1.0, burst=5.0, now=0.0)
    assert bucket.take(0.0, cost=4.0)
    assert not bucket.take(0.0, cost=2.0)
    assert bucket.take(0.0, cost=1.0)
