"""What every worker process does before it serves: load the worker config, open the database the
master migrated, build the HomeServer in worker mode, follow the master over replication, and
serve only the paths its type owns (hs/worker_routes.py).

`apps/<type>.py` call `create_worker_app(type, resource_modules)`; HS_CONFIG names the main
homeserver.yaml and HS_WORKER_CONFIG the worker's file.
"""

import json
import logging
import os
import time

import falcon
import gevent

from hs.api import status
from hs.api.app import build_app
from hs.config import ConfigError
from hs.errors import Codes, MatrixError
from hs.federation.tls_listener import start_tls_listeners
from hs.handlers.presence import WorkerPresence
from hs.logging_setup import setup_logging
from hs.metrics import register_replication_client
from hs.server import HomeServer, load_or_create_signing_keys
from hs.storage.database import Database
from hs.storage.embedded import embedded_dsn
from hs.storage.migrations import latest_version, wait_for_schema
from hs.stream_catalogue import build_catalogue
from hs.worker_config import load_worker_config
from hs.worker_routes import serves
from replication.client import ReplicationClient
from replication.http import MasterClient

logger = logging.getLogger(__name__)

SCHEMA_WAIT_S = 120.0


class WorkerRoutes:
    """Answers 404 M_UNRECOGNIZED for a path this worker type does not own, before any resource
    runs: a request that reaches a worker directly (not through HAProxy) must not write from it."""

    def __init__(self, worker_type: str):
        self.worker_type = worker_type

    def process_request(self, req, resp):
        if req.method == "OPTIONS" or req.path in ("/_hs/status", "/_matrix/client/versions", "/metrics"):
            return
        raw_path = req.env.get("RAW_URI", req.path).split("?", 1)[0] or req.path
        if not serves(self.worker_type, req.method, raw_path):
            raise MatrixError(404, Codes.UNRECOGNIZED, "Unrecognized request")


def open_worker_database(config) -> Database:
    """The master's database, once the master has migrated it to the schema this code ships."""
    dsn = config.database_dsn or embedded_dsn(config.data_dir)
    if dsn is None:
        raise ConfigError(f"no `database` section and the embedded PostgreSQL in {config.data_dir} is not running: "
                          "start the master first (synctl -a starts it before the workers)")
    db = Database(dsn, max_connections=config.database_max_connections)
    wait_for_schema(db, latest_version(), SCHEMA_WAIT_S)
    return db


def attach_replication(hs, client: ReplicationClient, config) -> None:
    """Points what the worker would have written itself at the master: presence through
    USER_SYNC, last-seen through USER_IP, filters through the internal HTTP API; and makes its
    syncs wait for the positions a client's token covers."""
    master = MasterClient(config.worker_replication_host, config.worker_replication_http_port,
                          config.replication_secret, client.wait_for)
    hs.master = master

    def catch_up(targets: dict, timeout: float) -> bool:
        if not client.ready.wait(timeout):
            return False
        client.wait_for(targets, timeout)
        return True
    hs.streams.catch_up = catch_up

    # The first events position this worker takes is where it starts seeing member events.
    def first_position(token: int) -> None:
        if hs.membership_changes.start > token:
            hs.membership_changes.start = token
    hs.event_stream.add_listener(first_position)

    hs.presence_writer = WorkerPresence(client, master, config.presence_enabled)

    def user_ip(user_id, device_id, ip, user_agent, now):
        row = {"user_id": user_id, "device_id": device_id, "ip": ip, "user_agent": user_agent, "last_seen": now}
        client.send("USER_IP " + json.dumps(row, separators=(",", ":")))
    hs.auth.record_last_seen = user_ip

    hs.filter_handler.store_filter = lambda user_id, body: master.call("create_filter",
                                                                        {"user_id": user_id, "filter": body})
    forward_federation_writes(hs, master)


# How often a federation_reader tells the master that a server it hears from is up.
WAKE_INTERVAL_S = 30.0


def forward_federation_writes(hs, master) -> None:
    """A federation_reader authenticates and reads; the events, EDUs and memberships an inbound
    request writes are the master's (hs/master_replication.py)."""
    hs.federation_events.on_transaction = lambda origin, txn_id, pdus, edus: master.call(
        "federation_transaction", {"origin": origin, "txn_id": txn_id, "pdus": pdus, "edus": edus})
    hs.federation_membership.on_send = lambda membership, origin, room_id, event_id, pdu: master.call(
        "federation_send_membership", {"membership": membership, "origin": origin, "room_id": room_id,
                                       "event_id": event_id, "pdu": pdu})
    hs.federation_membership.on_invite = lambda origin, room_id, event_id, body: master.call(
        "federation_invite", {"origin": origin, "room_id": room_id, "event_id": event_id, "body": body})
    # /messages on a client_reader paging back past what we hold: the master fetches the history
    # (asked only when the room's timeline does point back at events we lack).
    def backfill(room_id: str, limit: int) -> bool:
        if not hs.federation_event_store.get_backward_extremities(room_id):
            return False
        return bool(master.call("federation_backfill", {"room_id": room_id, "limit": limit}))
    hs.room_reads.backfill = backfill
    last_woken: dict[str, float] = {}

    def wake_destination(origin: str) -> None:
        # Every inbound request would be one call too many: a destination in backoff needs one.
        now = time.monotonic()
        if now - last_woken.get(origin, -WAKE_INTERVAL_S) >= WAKE_INTERVAL_S:
            if len(last_woken) > 10_000:
                last_woken.clear()
            last_woken[origin] = now
            gevent.spawn(master.call, "federation_wake", {"origin": origin})
    hs.wake_destination = wake_destination


def create_worker_app(worker_type: str, resource_modules) -> falcon.App:
    config = load_worker_config(os.environ["HS_WORKER_CONFIG"], os.environ.get("HS_CONFIG", "homeserver.yaml"))
    if config.worker_app != worker_type:
        raise ConfigError(f"{config.worker_config_path}: worker_app is {config.worker_app}, "
                          f"but this is the {worker_type} app")
    setup_logging(config)
    db = open_worker_database(config)
    hs = HomeServer(config, db, load_or_create_signing_keys(config), worker=True)
    client = ReplicationClient(config.server_name, config.worker_replication_host, config.worker_replication_port,
                               config.worker_name, build_catalogue(hs),
                               secret=config.replication_secret, on_new_epoch=hs.typing.forget_all)
    attach_replication(hs, client, config)
    register_replication_client(client)
    client.start()

    app = build_app(hs.auth, config)
    app.add_middleware(WorkerRoutes(worker_type))
    for module in resource_modules:
        module.register(app, hs)
    status.register(app, worker_type, config.worker_name, client.positions, client.ready.is_set,
                    hs.status_details)
    start_tls_listeners(config, app)
    logger.info("%s worker %s ready to serve", worker_type, config.worker_name)
    return app
