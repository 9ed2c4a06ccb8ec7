"""Prometheus metrics (prometheus-client), one registry per application.

Counters that the relay already keeps (``Hub.stats``, the store's) are read at scrape
time by a custom collector, so the hot path pays nothing for them; only the two latency
histograms are observed as things happen.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from collab.relay.hub import Hub

__all__ = ["CONTENT_TYPE", "Metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_FAST_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25)
_COMMIT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)


class Metrics:
    """Everything /metrics exposes for one server."""

    def __init__(self, hub: Hub, sessions: Callable[[], int] | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.relay_seconds = Histogram(
            "collab_relay_seconds",
            "Time from receiving a message to having queued it for every member and the store"
            " (one message in 16 of each connection is timed)",
            buckets=_FAST_BUCKETS,
            registry=self.registry,
        )
        self.commit_seconds = Histogram(
            "collab_store_commit_seconds",
            "Duration of one group commit",
            buckets=_COMMIT_BUCKETS,
            registry=self.registry,
        )
        self.closes = Counter(
            "collab_closes",
            "WebSocket connections (and Hocuspocus documents) closed, by close code and protocol",
            ["code", "protocol"],
            registry=self.registry,
        )
        self.registry.register(_HubCollector(hub, sessions or (lambda: 0)))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _HubCollector(Collector):
    def __init__(self, hub: Hub, sessions: Callable[[], int]) -> None:
        self._hub = hub
        self._sessions = sessions

    def collect(self) -> Iterator[Metric]:
        hub = self._hub
        stats, store = hub.stats, hub.store
        yield GaugeMetricFamily("collab_connections", "Open WebSocket connections", hub.members)
        members = GaugeMetricFamily(
            "collab_members", "Room members, by protocol", labels=["protocol"]
        )
        sessions = self._sessions()
        members.add_metric(["y-websocket"], hub.members - sessions)
        members.add_metric(["hocuspocus"], sessions)
        yield members
        yield GaugeMetricFamily("collab_rooms_loaded", "Rooms in memory", len(hub.rooms))
        for name, help_text, value in (
            ("collab_messages_received", "Binary messages received", stats.messages_in),
            ("collab_bytes_received", "Bytes of binary messages received", stats.bytes_in),
            ("collab_updates_received", "Document updates received", stats.updates_in),
            ("collab_deliveries", "Messages relayed to members", stats.deliveries),
            ("collab_bytes_sent", "Bytes relayed to members", stats.bytes_out),
            ("collab_rooms_loaded_total", "Room loads", stats.rooms_loaded),
            ("collab_rooms_unloaded_total", "Room unloads", stats.rooms_unloaded),
            (
                "collab_rooms_reset",
                "Rooms thrown away after their document panicked in yrs",
                stats.rooms_reset,
            ),
            (
                "collab_stale_lineage_refused",
                "Uploads refused for carrying a history the document retired (4410)",
                stats.stale_refused,
            ),
            (
                "collab_updates_quarantined",
                "Stored rows skipped at load because they cannot be applied",
                stats.quarantined,
            ),
            (
                "collab_awareness_limited",
                "Connections closed for sending awareness faster than their limit",
                stats.awareness_limited,
            ),
            ("collab_store_commits", "Successful group commits", store.commits),
            ("collab_store_write_errors", "Failed commits (retried)", store.write_errors),
            (
                "collab_store_checkpoints_dropped",
                "Checkpoints not written because a commit failed",
                store.checkpoints_dropped,
            ),
        ):
            yield CounterMetricFamily(name, help_text, value=value)
        yield GaugeMetricFamily(
            "collab_store_backlog_bytes", "Bytes waiting to be committed", store.backlog_bytes
        )
        yield GaugeMetricFamily(
            "collab_store_stalled", "1 while the store cannot commit", int(store.stalled)
        )
        hooks = hub.webhooks
        for name, help_text, value in (
            ("collab_webhooks_sent", "Webhook deliveries accepted (2xx)", hooks.sent),
            ("collab_webhooks_failed", "Webhook events refused or given up", hooks.failed),
            ("collab_webhooks_dropped", "Webhook events dropped from a full queue", hooks.dropped),
            ("collab_webhooks_retried", "Webhook attempts after a failed one", hooks.retries),
        ):
            yield CounterMetricFamily(name, help_text, value=value)
        yield GaugeMetricFamily("collab_webhooks_queued", "Webhook events waiting", hooks.queued)
        yield CounterMetricFamily(
            "collab_store_seq_races", "Commits renumbered after another node", store.seq_races
        )
        cluster = hub.cluster
        if cluster is not None:
            yield GaugeMetricFamily(
                "collab_redis_connected", "1 while the Redis relay is up", int(cluster.connected)
            )
            for name, help_text, value in (
                ("collab_cluster_published", "Messages sent to other nodes", cluster.published),
                ("collab_cluster_received", "Messages from other nodes", cluster.received),
                ("collab_cluster_dropped", "Messages not relayed (Redis down)", cluster.dropped),
            ):
                yield CounterMetricFamily(name, help_text, value=value)
