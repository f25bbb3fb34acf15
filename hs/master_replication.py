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

    # Inbound federation served by a federation_reader: the request was authenticated there;
    # what it writes (events, EDUs, memberships) is written here.
    def federation_transaction(body):
        return hs.federation_events.on_transaction(body["origin"], body["txn_id"], body["pdus"], body["edus"])

    def federation_send_membership(body):
        return hs.federation_membership.on_send(body["membership"], body["origin"], body["room_id"],
                                                body["event_id"], body["pdu"])

    def federation_invite(body):
        return hs.federation_membership.on_invite(body["origin"], body["room_id"], body["event_id"], body["body"])

    def federation_backfill(body):
        return hs.backfiller.backfill(body["room_id"], int(body["limit"]))

    def federation_wake(body):
        if hs.federation_sender is not None:
            hs.federation_sender.wake_destination(body["origin"])
        return {}

    return {"create_filter": create_filter, "presence_from_sync": presence_from_sync, "remove_pusher": remove_pusher,
            "federation_transaction": federation_transaction, "federation_send_membership": federation_send_membership,
            "federation_invite": federation_invite, "federation_wake": federation_wake,
            "federation_backfill": federation_backfill}


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
