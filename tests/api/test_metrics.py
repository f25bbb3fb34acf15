"""GET /metrics: Prometheus' text format on a listener serving the `metrics` resource or of
`type: metrics`, unauthenticated, and nowhere else. Requests are counted per route template
(never per raw path), timed, and the database pool, transactions and parked /sync requests show."""

import time
import uuid

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.api.test_sync import sync
from tests.api.test_sync_longpoll import Parked
from tests.harness import HomeserverProcess, free_port, new_user, q

PROFILE_ROUTE = "/_matrix/client/v3/profile/{user_id}"


@pytest.fixture(scope="module")
def server(db_dsn):
    hs = HomeserverProcess(db_dsn)
    hs.metrics_port, hs.metrics_listener_port = free_port(), free_port()
    hs.config["listeners"] += [
        {"port": hs.metrics_port, "type": "http", "bind_addresses": ["127.0.0.1"],
         "resources": [{"names": ["metrics"]}]},
        {"port": hs.metrics_listener_port, "type": "metrics", "bind_addresses": ["127.0.0.1"]},
    ]
    try:
        yield hs.start()
    finally:
        hs.stop()


def scrape_text(port: int) -> str:
    resp = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return resp.text


def scrape(port: int) -> dict:
    """{(sample name, frozenset of its labels): value}"""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(scrape_text(port)) for s in family.samples}


def value(samples: dict, sample_name: str, **labels) -> float | None:
    return samples.get((sample_name, frozenset(labels.items())))


def wait_until(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def test_requests_are_counted_per_route_template_not_per_path(server):
    alice, bob = new_user(server, "metrics"), new_user(server, "metrics")
    before = scrape(server.metrics_port)
    for user in (alice, bob):
        assert alice.get(f"/profile/{q(user.user_id)}").status_code == 200
    after = scrape(server.metrics_port)
    labels = {"method": "GET", "route": PROFILE_ROUTE, "status": "200"}
    assert value(after, "hs_http_requests_total", **labels) == (value(before, "hs_http_requests_total", **labels)
                                                                or 0) + 2
    text = scrape_text(server.metrics_port)
    assert alice.user_id not in text and bob.user_id not in text


def test_request_latency_is_a_histogram_per_route_template(server):
    alice = new_user(server, "metrics")
    before = scrape(server.metrics_port)
    assert alice.get(f"/profile/{q(alice.user_id)}").status_code == 200
    after = scrape(server.metrics_port)
    labels = {"method": "GET", "route": PROFILE_ROUTE}
    count = "hs_http_request_duration_seconds_count"
    assert value(after, count, **labels) == (value(before, count, **labels) or 0) + 1
    assert value(after, "hs_http_request_duration_seconds_bucket", **labels, le="+Inf") == value(after, count,
                                                                                                  **labels)
    assert value(after, "hs_http_request_duration_seconds_sum", **labels) > 0


def test_a_path_no_route_matches_is_counted_as_unmatched_without_its_path(server):
    alice = new_user(server, "metrics")
    before = scrape(server.metrics_port)
    missing = f"/no_such_endpoint_{uuid.uuid4().hex}"
    resp = alice.get(missing)
    assert resp.status_code == 404 and resp.json()["errcode"] == "M_UNRECOGNIZED"
    after = scrape(server.metrics_port)
    labels = {"method": "GET", "route": "unmatched", "status": "404"}
    assert value(after, "hs_http_requests_total", **labels) == (value(before, "hs_http_requests_total", **labels)
                                                                or 0) + 1
    assert missing not in scrape_text(server.metrics_port)


def test_database_pool_and_transactions_are_measured(server):
    alice = new_user(server, "metrics")
    before = scrape(server.metrics_port)
    assert alice.get(f"/profile/{q(alice.user_id)}").status_code == 200
    after = scrape(server.metrics_port)
    assert value(after, "hs_db_pool_size") == 5  # cp_max in tests/harness.py
    assert 0 <= value(after, "hs_db_pool_connections_in_use") <= 5
    count = "hs_db_txn_duration_seconds_count"
    assert value(after, count, name="get_profile") == (value(before, count, name="get_profile") or 0) + 1


def test_a_parked_sync_shows_in_the_parked_gauge_until_it_returns(server):
    alice = new_user(server, "metrics")
    since = sync(alice)["next_batch"]
    assert value(scrape(server.metrics_port), "hs_notifier_parked_requests") == 0
    parked = Parked(alice, since=since, timeout=2000)
    wait_until(lambda: value(scrape(server.metrics_port), "hs_notifier_parked_requests") == 1)
    parked.result()
    assert value(scrape(server.metrics_port), "hs_notifier_parked_requests") == 0


def test_process_identity_and_process_metrics_are_exposed(server):
    samples = scrape(server.metrics_port)
    assert value(samples, "target_info", app="master", worker="master") == 1
    assert value(samples, "process_resident_memory_bytes") > 0


def test_metrics_is_not_found_on_a_listener_without_the_metrics_resource(server):
    resp = requests.get(server.url("/metrics"), timeout=10)
    assert resp.status_code == 404
    assert resp.json()["errcode"] == "M_UNRECOGNIZED"


def test_a_metrics_type_listener_serves_metrics_and_nothing_else(server):
    samples = scrape(server.metrics_listener_port)
    assert value(samples, "target_info", app="master", worker="master") == 1
    resp = requests.get(f"http://127.0.0.1:{server.metrics_listener_port}/_matrix/client/versions", timeout=10)
    assert resp.status_code == 404
    assert resp.json()["errcode"] == "M_UNRECOGNIZED"


def test_a_listener_serving_only_metrics_does_not_serve_the_client_api(server):
    resp = requests.get(f"http://127.0.0.1:{server.metrics_port}/_matrix/client/versions", timeout=10)
    assert resp.status_code == 404
    assert resp.json()["errcode"] == "M_UNRECOGNIZED"
