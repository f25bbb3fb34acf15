"""Fetching a room's earlier history from other servers (/backfill) when a user pages back past
the start of what this server holds: after joining over federation, the events before the join."""

import logging

from hs.federation.http_client import FederationRequestError
from hs.federation.server_name import quote_path_segment as q
from hs.handlers.federation_events import PduRejected

logger = logging.getLogger(__name__)

# Events asked for in one /backfill (Synapse asks for 100 at most).
MAX_BACKFILL = 100


class Backfiller:
    def __init__(self, config, rooms, creation, fed_events, fed_store, client):
        self.server_name = config.server_name
        self.rooms = rooms
        self.creation = creation
        self.fed_events = fed_events
        self.fed_store = fed_store
        self.client = client

    def backfill(self, room_id: str, limit: int) -> bool:
        """Asks a server in the room for up to `limit` events before our earliest ones; True
        if any were added."""
        extremities = self.fed_store.get_backward_extremities(room_id)
        if not extremities:
            return False
        servers = [s for s in self.rooms.get_joined_servers(room_id) if s != self.server_name]
        room = self.rooms.get_room(room_id)
        for server in servers:
            try:
                body = self.client.get_json(server, f"/_matrix/federation/v1/backfill/{q(room_id)}",
                                            {"v": extremities[:20], "limit": str(min(max(limit, 10), MAX_BACKFILL))})
            except FederationRequestError as e:
                logger.info("Backfill of %s from %s failed: %s", room_id, server, e)
                continue
            pdus = body.get("pdus") if isinstance(body, dict) else None
            if not isinstance(pdus, list):
                continue
            return self._add(server, room_id, room, pdus) > 0
        return False

    def _add(self, server: str, room_id: str, room, pdus: list) -> int:
        from hs.events.room_versions import get_room_version

        room_version = get_room_version(room.room_version)
        parsed = []
        for pdu in pdus[:MAX_BACKFILL]:
            try:
                event = self.fed_events.parse_pdu(room_version, pdu)
            except PduRejected as e:
                logger.info("Backfilled event from %s dropped: %s", server, e)
                continue
            if event.room_id_in_any_version == room_id:
                parsed.append(event)
        added = 0
        with self.creation.room_lock(room_id):
            for event in sorted(parsed, key=lambda e: (e.depth, e.origin_server_ts)):
                if self.fed_store.get_known([event.event_id]).get(event.event_id) in ("timeline", "rejected"):
                    continue
                try:
                    event = self.fed_events.check_signatures(event)
                    state_before, group = self.fed_events.state_before(server, room_id, event)
                    self.fed_events.check_and_persist(server, room_id, event, state_before, group, backfilled=True)
                    added += 1
                except (PduRejected, FederationRequestError) as e:
                    logger.info("Backfilled event %s not added: %s", event.event_id, e)
        return added
