"""Our homeserver federating as docs/workers.md deploys it: `synctl -a DIR start` runs the master
and its workers (tests/workers/synctl_cluster.py), and HAProxy, configured by `synctl haproxy-config
--federation-bind --federation-pem`, holds the TLS federation port named in the server name
`127.0.0.1:PORT` and the plain client port. Every process stays on plain HTTP on loopback behind it.

Every process has a metrics listener, so a test can tell from `hs_http_requests_total` which one
served what.
"""

import contextlib
import os
import re
import time

import requests
import yaml

from tests.federation_fixture import FAST_RETRIES, TestCA
from tests.harness import free_port
from tests.workers.synctl_cluster import Cluster, running_cluster, running_haproxy

FEDERATION_PREFIX = "/_matrix/federation/"


class Front:
    """Our server as the federation test helpers (tests/federation_fixture.py) see it: its name,
    and its client API at HAProxy's client port."""

    def __init__(self, server_name: str, base_url: str):
        self.server_name = server_name
        self.base_url = base_url

    def url(self, path: str) -> str:
        return self.base_url + path


def _master_listeners(cluster: Cluster) -> int:
    """The master's listeners as the worker docs want them for the federation port: the plain http
    one serving `client` and `federation` (HAProxy ends TLS), beside the replication ones, and a
    metrics listener whose port this returns."""
    with open(cluster.main, encoding="utf-8") as f:
        config = yaml.safe_load(f)
    config["listeners"][0]["resources"] = [{"names": ["client", "federation"]}]
    port = free_port()
    config["listeners"].append({"type": "metrics", "port": port, "bind_addresses": ["127.0.0.1"]})
    with open(cluster.main, "w", encoding="utf-8") as f:
        yaml.safe_dump(config, f)
    return port


@contextlib.contextmanager
def running_federating_cluster(db_dsn: str, ca: TestCA, workers: dict[str, str], **main_config):
    """Yields (cluster, front) once HAProxy serves our key on the federation port under `ca`:
    the master and `workers` (name -> worker app; federation_readers serve client and federation)
    on the database `db_dsn`, each with a metrics listener (`cluster.metrics_url(name)`, the
    master's under "master"). Everything is stopped by pid on exit."""
    fed_port = free_port()
    server_name = f"127.0.0.1:{fed_port}"
    with running_cluster(server_name=server_name, database={"name": "psycopg2", "args": {"dsn": db_dsn}},
                         federation_ip_range_blacklist=[], federation_custom_ca_list=[ca.cert_path],
                         trusted_key_servers=[], suppress_key_server_warning=True,
                         federation=dict(FAST_RETRIES), **main_config) as cluster:
        cluster.metrics_ports["master"] = _master_listeners(cluster)
        for name, app in workers.items():
            resources = ("client", "federation") if app == "apps.federation_reader" else ("client",)
            cluster.add_worker(name, app, resources=resources, metrics=True)
        started = cluster.run("-a", cluster.dir, "start", cluster.main)
        assert started.returncode == 0, started.stdout + started.stderr
        # HAProxy's certificate for the federation port: the chain, then its key, in one file.
        cert_path, key_path = ca.issue(cluster.synctl.dir)
        pem = os.path.join(cluster.synctl.dir, "federation.pem")
        with open(pem, "w") as out, open(cert_path) as cert, open(key_path) as key:
            out.write(cert.read() + key.read())
        with running_haproxy(cluster, "--federation-bind", server_name, "--federation-pem", pem) as base:
            key_url = f"https://{server_name}/_matrix/key/v2/server"
            deadline = time.monotonic() + 15
            while requests.get(key_url, verify=ca.cert_path, timeout=2).status_code != 200:
                assert time.monotonic() < deadline, f"{key_url} never answered 200"
                time.sleep(0.2)
            yield cluster, Front(server_name, base)


def requests_served(cluster: Cluster, name: str) -> dict[str, float]:
    """hs_http_requests_total of process `name` by route template, summed over methods and statuses."""
    served: dict[str, float] = {}
    for line in requests.get(cluster.metrics_url(name), timeout=5).text.splitlines():
        found = re.match(r'hs_http_requests_total\{.*route="([^"]*)".*\} (\S+)$', line)
        if found:
            served[found[1]] = served.get(found[1], 0.0) + float(found[2])
    return served


def federation_served(cluster: Cluster, name: str) -> dict[str, float]:
    """The federation API routes among requests_served."""
    return {route: n for route, n in requests_served(cluster, name).items() if route.startswith(FEDERATION_PREFIX)}
