"""Prometheus metrics of this process, served as ``GET /metrics`` (see hs/api/app.py).

One CollectorRegistry per process, made here rather than prometheus_client's global one, so that
nothing else imported into the process adds series to our scrape. What a process is shows in
``target_info{app, worker}`` (app "master" and worker "master" on the master), not as a label on
every series.

Per-request work is one dict lookup, one counter increment and one histogram observation: the
labelled children are cached by (method, route template, status), and the route is Falcon's
``uri_template`` (never the raw path, whose IDs would make a series per room or user). Everything
read from live objects (parked long-polls, the connection pool, replication) is read at scrape
time by a collector, so nothing is updated on their hot paths.
"""

import time

from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    CollectorRegistry,
    Counter,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)

# A long-poll is as long as its client's timeout (clients use 30 s), hence the top buckets.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
_DB_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Any other method string a client sends is counted as "other", so it cannot make new series.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})

HTTP_REQUESTS = Counter("hs_http_requests", "HTTP requests answered, by method, route template and status",
                        ["method", "route", "status"], registry=REGISTRY)
HTTP_DURATION = Histogram("hs_http_request_duration_seconds",
                          "Time from receiving a request to its response, by method and route template",
                          ["method", "route"], buckets=_LATENCY_BUCKETS, registry=REGISTRY)
DB_TXN_DURATION = Histogram("hs_db_txn_duration_seconds",
                            "Time of each committed database transaction (waiting for a connection and "
                            "retries included), by transaction name",
                            ["name"], buckets=_DB_BUCKETS, registry=REGISTRY)

# The live objects each scrape reads, by kind: registering another of a kind replaces the first
# (a process has one notifier, one pool, one replication server or client).
_live: dict[str, object] = {}


def render() -> tuple[bytes, str]:
    """The exposition text of every metric of this process, and its content type: the classic
    text format 0.0.4, which every Prometheus reads (our names need none of 1.0.0's escaping)."""
    return generate_latest(REGISTRY), CONTENT_TYPE_PLAIN_0_0_4


def set_process(app: str, worker: str) -> None:
    REGISTRY.set_target_info({"app": app, "worker": worker})


def observe_txn(name: str, seconds: float) -> None:
    DB_TXN_DURATION.labels(name).observe(seconds)


class RequestMetrics:
    """Falcon middleware counting and timing every request. Put it first, so that its
    process_request runs even when a later middleware refuses the request, and its
    process_response sees the final status."""

    def __init__(self):
        self._children: dict[tuple, tuple] = {}

    def process_request(self, req, resp):
        req.context.metrics_start = time.monotonic()

    def process_response(self, req, resp, resource, req_succeeded):
        elapsed = time.monotonic() - req.context.metrics_start
        method = req.method if req.method in _METHODS else "other"
        # None when no route matched, or the request was refused before routing.
        route = req.uri_template or "unmatched"
        key = (method, route, resp.status_code)
        children = self._children.get(key)
        if children is None:
            children = (HTTP_REQUESTS.labels(method, route, str(resp.status_code)),
                        HTTP_DURATION.labels(method, route))
            self._children[key] = children
        children[0].inc()
        children[1].observe(elapsed)


class _LiveCollector:
    def __init__(self, source):
        self.source = source


class NotifierCollector(_LiveCollector):
    def collect(self):
        yield GaugeMetricFamily("hs_notifier_parked_requests",
                                "Long-poll requests (/sync, /events) parked waiting for news",
                                value=self.source.parked_count())


class PoolCollector(_LiveCollector):
    def collect(self):
        yield GaugeMetricFamily("hs_db_pool_connections_in_use", "Database connections checked out now",
                                value=self.source.in_use())
        yield GaugeMetricFamily("hs_db_pool_size", "Most database connections the pool may open",
                                value=self.source.max_size)


class ReplicationServerCollector(_LiveCollector):
    def collect(self):
        server = self.source
        sent = GaugeMetricFamily("hs_replication_sent_position",
                                 "Position up to which the master has sent each stream to its workers",
                                 labels=["stream"])
        for name, position in sorted(server.positions().items()):
            sent.add_metric([name], position)
        yield sent
        connections = list(server.connections)
        yield GaugeMetricFamily("hs_replication_connections", "Workers connected over replication",
                                value=len(connections))
        # Summed per name: a worker reconnecting may briefly hold two connections of one name.
        depths: dict[str, int] = {}
        for connection in connections:
            depths[connection.name] = depths.get(connection.name, 0) + connection.conn.queue_depth()
        queue = GaugeMetricFamily("hs_replication_queue_lines",
                                  "Lines queued for sending to each replication connection, by its name",
                                  labels=["connection"])
        for name, depth in sorted(depths.items()):
            queue.add_metric([name], depth)
        yield queue


class ReplicationClientCollector(_LiveCollector):
    def collect(self):
        client = self.source
        applied = GaugeMetricFamily("hs_replication_applied_position",
                                    "Position up to which this worker has applied each stream", labels=["stream"])
        lag = GaugeMetricFamily("hs_replication_lag",
                                "Stream ids the master has announced and this worker has not applied yet "
                                "(0 while the master's position is unknown)", labels=["stream"])
        for name, position in sorted(client.positions().items()):
            applied.add_metric([name], position)
            lag.add_metric([name], max(0, client.master_positions.get(name, position) - position))
        yield applied
        yield lag
        yield GaugeMetricFamily("hs_replication_connected", "1 while connected to the master, else 0",
                                value=1 if client.connected else 0)
        yield CounterMetricFamily("hs_replication_catch_up_pages",
                                  "Pages of rows read from PostgreSQL to catch up on a gap", value=client.catch_up_pages)


class FederationSenderCollector(_LiveCollector):
    """Which destinations are failing, since when and when they are tried next (the operator's
    view; `synctl status` shows the same)."""

    def collect(self):
        status = self.source.status()
        since = GaugeMetricFamily("hs_federation_destination_failing_since_seconds",
                                  "Unix time a failing destination first failed", labels=["destination"])
        retry = GaugeMetricFamily("hs_federation_destination_retry_in_seconds",
                                  "Seconds until a failing destination is tried again", labels=["destination"])
        for failing in status["destinations_failing"]:
            if failing["failing_since_ms"] is not None:
                since.add_metric([failing["destination"]], failing["failing_since_ms"] / 1000)
            retry.add_metric([failing["destination"]], failing["retry_in_ms"] / 1000)
        yield since
        yield retry
        yield GaugeMetricFamily("hs_federation_destinations_failing", "Destinations failing now",
                                value=len(status["destinations_failing"]))
        yield GaugeMetricFamily("hs_federation_pdus_queued", "PDUs waiting to be sent", value=status["pdus_queued"])
        yield GaugeMetricFamily("hs_federation_edus_queued", "EDUs waiting to be sent", value=status["edus_queued"])


def _register(kind: str, collector: _LiveCollector) -> None:
    previous = _live.pop(kind, None)
    if previous is not None:
        REGISTRY.unregister(previous)
    REGISTRY.register(collector)
    _live[kind] = collector


def register_notifier(notifier) -> None:
    _register("notifier", NotifierCollector(notifier))


def register_pool(pool) -> None:
    _register("pool", PoolCollector(pool))


def register_replication_server(server) -> None:
    """The master: per-stream positions sent, connections and their outbound queues."""
    _register("replication_server", ReplicationServerCollector(server))


def register_replication_client(client) -> None:
    """A worker: per-stream applied position and lag, connected, catch-up pages read."""
    _register("replication_client", ReplicationClientCollector(client))


def register_federation_sender(sender) -> None:
    """The master's federation sender: failing destinations and queues."""
    _register("federation_sender", FederationSenderCollector(sender))
