"""The master's side of replication: the TCP replication server on its `type: replication`
listeners, the internal HTTP actions workers write through, and its /_hs/status.

Called by apps/master.py once the HomeServer and the app exist; the server runs in the master's
own process and gevent hub, beside the HTTP app.
"""

import logging

from hs import metrics
from hs.api import status
from hs.stream_catalogue import build_catalogue
from replication import http as replication_http
from replication.server import ReplicationServer

logger = logging.getLogger(__name__)


def worker_actions(hs) -> dict:
    """The writes workers send the master: {name: callable(body) -> result}."""

    def create_filter(body):
        return hs.filters.add_filter(body["user_id"], body["filter"])

    def presence_from_sync(body):
        hs.presence_writer.state_from_sync(body["user_id"], body["state"])
        return {}

    def remove_pusher(body):
        hs.pushers.remove_pusher(body["user_id"], body["app_id"], body["pushkey"])
        return {}

    return {"create_filter": create_filter, "presence_from_sync": presence_from_sync, "remove_pusher": remove_pusher}


def start_replication(hs, app) -> ReplicationServer | None:
    config = hs.config
    catalogue = build_catalogue(hs)
    server = None
    binds = [(addr, lst.port) for lst in config.replication_listeners() for addr in lst.bind_addresses]
    if binds:
        server = ReplicationServer(config.server_name, catalogue, secret=config.replication_secret,
                                   presence=hs.presence_writer, on_user_ip=lambda row: _user_ip(hs, row))
        server.start(binds)
        metrics.register_replication_server(server)
        positions = server.positions
    else:
        def positions():
            return {stream.name: stream.position.get_current_token() for stream in catalogue}
    replication_http.register(app, worker_actions(hs), positions, config.replication_secret)
    status.register(app, "master", "master", positions, details=hs.status_details)
    return server


def _user_ip(hs, row: dict) -> None:
    try:
        hs.devices.record_last_seen(row["user_id"], row["device_id"], row["ip"], row.get("user_agent"),
                                    int(row["last_seen"]))
    except (KeyError, TypeError, ValueError):
        logger.warning("replication: malformed USER_IP row ignored")
