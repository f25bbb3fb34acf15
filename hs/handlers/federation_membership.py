"""Membership across servers: our users joining, leaving and knocking on rooms this server is
not in (make_*/send_* to a resident server), remote users doing the same in ours, and invites
both ways (/server-server-api#joining-rooms, #inviting-to-a-room, #leaving-rooms-rejecting-invites).
"""

import logging

from hs.clock import now_ms
from hs.errors import Codes, MatrixError
from hs.events.client_format import stripped_state_event
from hs.events.event_signing import sign_event
from hs.events.hashing import event_from_pdu
from hs.events.room_versions import KNOWN_ROOM_VERSIONS, Redaction, get_room_version
from hs.events.validation import PduFormatError, validate_pdu_format
from hs.federation.http_client import FederationHttpError, FederationRequestError
from hs.federation.server_name import quote_path_segment as q
from hs.federation.server_name import server_name_of
from hs.handlers.federation_events import PduRejected
from hs.storage.rooms import RoomStore

logger = logging.getLogger(__name__)

SUPPORTED_VERSIONS = list(KNOWN_ROOM_VERSIONS)
_TEMPLATE_KEYS = ("room_id", "type", "state_key", "sender", "content", "prev_events", "auth_events", "depth",
                  "event_id", "redacts")
# The state an invitee or knocker is shown (/client-server-api#stripped-state).
STRIPPED_KEYS = [("m.room.create", ""), ("m.room.join_rules", ""), ("m.room.name", ""), ("m.room.avatar", ""),
                 ("m.room.canonical_alias", ""), ("m.room.encryption", ""), ("m.room.topic", "")]


class FederationMembershipHandler:
    def __init__(self, config, db, rooms, events, state, creation, fed_events, fed_store, client, signing_key):
        self.server_name = config.server_name
        self.db = db
        self.rooms = rooms
        self.events = events
        self.state = state
        self.creation = creation
        self.fed_events = fed_events
        self.fed_store = fed_store
        self.client = client
        self.signing_key = signing_key
        # Set by hs/server.py: forwards events made on behalf of remote users (send_join).
        self.sender = None
        # fn(room_id, user_id) -> the local user vouching for a restricted join, or None.
        self.restricted_authoriser = lambda room_id, user_id: None
        creation.before_persist.append(self._invite_remote_user)

    # --- our users, rooms elsewhere -----------------------------------------------------------

    def join_remote(self, user_id: str, room_id: str, servers: list, content: dict) -> str:
        return self._make_and_send("join", user_id, room_id, servers, content)

    def leave_remote(self, user_id: str, room_id: str, servers: list, content: dict) -> str:
        return self._make_and_send("leave", user_id, room_id, servers, content)

    def knock_remote(self, user_id: str, room_id: str, servers: list, content: dict) -> str:
        return self._make_and_send("knock", user_id, room_id, servers, content)

    def _make_and_send(self, membership: str, user_id: str, room_id: str, servers: list, content: dict) -> str:
        candidates = [s for s in dict.fromkeys(servers) if s and s != self.server_name]
        if not candidates:
            raise MatrixError(404, Codes.NOT_FOUND, "No known servers to reach the room through")
        last_error = None
        for server in candidates:
            try:
                return self._make_and_send_via(server, membership, user_id, room_id, content)
            except FederationHttpError as e:
                logger.info("%s of %s to %s via %s refused: %s", membership, user_id, room_id, server, e)
                last_error = _client_error(e, server, MatrixError(404, Codes.NOT_FOUND, _remote_message(e, server)))
            except (FederationRequestError, PduRejected, ValueError, KeyError, TypeError) as e:
                logger.info("%s of %s to %s via %s failed: %s", membership, user_id, room_id, server, e)
                last_error = MatrixError(404, Codes.NOT_FOUND, f"Could not {membership} through {server}: {e}")
        raise last_error

    def _make_and_send_via(self, server: str, membership: str, user_id: str, room_id: str, content: dict) -> str:
        args = {"ver": SUPPORTED_VERSIONS} if membership in ("join", "knock") else None
        made = self.client.get_json(server, f"/_matrix/federation/v1/make_{membership}/{q(room_id)}/{q(user_id)}",
                                    args)
        room_version = get_room_version(str(made.get("room_version", "1")))
        if room_version is None:
            raise MatrixError(400, Codes.INCOMPATIBLE_ROOM_VERSION, "The room's version is not supported")
        template = made.get("event")
        if not isinstance(template, dict) or template.get("type") != "m.room.member" \
                or template.get("state_key") != user_id or template.get("sender") != user_id:
            raise PduRejected(f"{server} answered make_{membership} with a bad template")
        pdu = {k: template[k] for k in _TEMPLATE_KEYS if k in template}
        template_content = template.get("content") if isinstance(template.get("content"), dict) else {}
        # The resident server may have added join_authorised_via_users_server (restricted rooms).
        pdu["content"] = {**template_content, **content, "membership": membership}
        pdu["origin_server_ts"] = now_ms()
        if room_version.redaction != Redaction.V11:
            pdu["origin"] = self.server_name
        event = self._sign(room_version, pdu)
        # send_knock has only ever had a v1, whose answer is not wrapped as v1 send_join's is.
        version = "v1" if membership == "knock" else "v2"
        path = f"/_matrix/federation/{version}/send_{membership}/{q(room_id)}/{q(event.event_id)}"
        answer = self.client.put_json(server, path, event.pdu)
        if membership == "join":
            self._complete_join(server, room_id, room_version, event, answer)
        else:
            self._store_membership_outside(room_id, room_version, event, answer.get("knock_room_state")
                                           if isinstance(answer, dict) else None)
        return event.event_id

    def _sign(self, room_version, pdu: dict):
        signed = sign_event(room_version, pdu, self.server_name, self.signing_key)
        try:
            validate_pdu_format(room_version, signed)
        except PduFormatError as e:
            raise PduRejected(f"the event made from the template is malformed: {e}") from None
        return event_from_pdu(room_version, signed)

    def _complete_join(self, server: str, room_id: str, room_version, event, answer: dict) -> None:
        """Stores the room as the send_join answer describes it, then our join on top."""
        state_pdus, chain_pdus = answer.get("state"), answer.get("auth_chain")
        if not isinstance(state_pdus, list) or not isinstance(chain_pdus, list):
            raise PduRejected(f"{server} gave a send_join answer without state")
        signed_back = answer.get("event")
        if isinstance(signed_back, dict):
            # A restricted join comes back signed by the server that vouched for it too.
            resigned = self.fed_events.parse_pdu(room_version, signed_back)
            if resigned.event_id == event.event_id:
                event = resigned
        create = next((p for p in state_pdus if isinstance(p, dict) and p.get("type") == "m.room.create"), None)
        if create is None:
            raise PduRejected(f"{server} gave a send_join answer without the create event")
        with self.creation.room_lock(room_id):
            if self.rooms.get_room(room_id) is None:
                self.db.run_txn("insert_remote_room", RoomStore.insert_room_txn, room_id, room_version.identifier,
                                str(create.get("sender", "")), False, now_ms())
            self.fed_events.persist_outliers(room_id, room_version, [*chain_pdus, *state_pdus])
            parsed_ids = []
            for pdu in state_pdus:
                try:
                    parsed_ids.append(self.fed_events.parse_pdu(room_version, pdu).event_id)
                except PduRejected:
                    continue
            rejected = self.fed_store.get_rejected_reasons(parsed_ids)
            loaded = self.events.get_events([i for i in parsed_ids if i not in rejected])
            state = {stored.event.state_key_tuple: eid for eid, stored in loaded.items() if stored.event.is_state()}
            reason = self.fed_events.check_against_state(event, state)
            if reason is not None:
                raise PduRejected(f"our join does not pass the room's state: {reason}")
            after = {**state, event.state_key_tuple: event.event_id}
            members = self.events.get_events(after.values())
            delta = {k: (eid, members[eid].event.membership if eid in members else "join") for k, eid in after.items()}
            outside = self._memberships_kept_outside(room_id, event.state_key)
            self.creation.persist_received(room_id, event, state, None, current_state_delta=delta,
                                           negative_ordering=self.fed_store.next_negative_stream_ordering,
                                           pre_txn=lambda cur: self.fed_store.hide_from_timeline_txn(cur, outside))
        logger.info("Joined %s through %s (%d state events)", room_id, server, len(state))

    def _memberships_kept_outside(self, room_id: str, user_id: str) -> list[str]:
        """The user's invite or knock stored while we were not in the room (it carries the
        stripped state it came with), if that is their membership now."""
        current = self.rooms.get_membership(room_id, user_id)
        stored = self.events.get_event(current[1]) if current is not None else None
        unsigned = (stored.event.pdu.get("unsigned") or {}) if stored is not None else {}
        return [current[1]] if "invite_room_state" in unsigned or "knock_room_state" in unsigned else []

    def _store_membership_outside(self, room_id: str, room_version, event, stripped_state) -> None:
        """A membership of one of our users in a room this server is not in (an invite, a
        knock, the leave that answers them): the user's record, not a place in the room's graph."""
        if isinstance(stripped_state, list):
            event.pdu.setdefault("unsigned", {})["invite_room_state" if event.membership == "invite"
                                                 else "knock_room_state"] = _valid_stripped(stripped_state)
        with self.creation.room_lock(room_id):
            if self.rooms.get_room(room_id) is None:
                create = next((s for s in stripped_state or [] if isinstance(s, dict)
                               and s.get("type") == "m.room.create"), {})
                self.db.run_txn("insert_remote_room", RoomStore.insert_room_txn, room_id, room_version.identifier,
                                str(create.get("sender", event.sender)), False, now_ms())
            if self.fed_store.get_known([event.event_id]):
                return
            self.creation.persist_received(room_id, event, {}, None, forward_extremity=False,
                                           negative_ordering=self.fed_store.next_negative_stream_ordering)

    # --- invites we send ----------------------------------------------------------------------

    def _invite_remote_user(self, room_id: str, event, state_events: dict):
        """before_persist hook: an invite of a remote user is counter-signed by their server first."""
        if event.type != "m.room.member" or event.membership != "invite":
            return event
        target_server = server_name_of(event.state_key)
        if target_server == self.server_name:
            return event
        stripped = [*self._stripped_state(room_id), stripped_state_event(event)]
        body = {"event": event.pdu, "room_version": event.room_version.identifier, "invite_room_state": stripped}
        try:
            answer = self.client.put_json(target_server, f"/_matrix/federation/v2/invite/{q(room_id)}/"
                                                         f"{q(event.event_id)}", body)
        except FederationHttpError as e:
            raise _client_error(e, target_server, MatrixError(403, Codes.FORBIDDEN, _remote_message(e, target_server))
                                ) from None
        except FederationRequestError as e:
            raise MatrixError(403, Codes.FORBIDDEN, f"Could not reach {target_server}: {e}") from None
        signed = answer.get("event") if isinstance(answer, dict) else None
        try:
            countersigned = self.fed_events.parse_pdu(event.room_version, signed)
            if countersigned.event_id != event.event_id:
                raise PduRejected("the invite came back changed")
            self.fed_events.check_signatures(countersigned)
        except PduRejected as e:
            raise MatrixError(403, Codes.FORBIDDEN, f"{target_server} answered the invite badly: {e}") from None
        if target_server not in (countersigned.pdu.get("signatures") or {}):
            raise MatrixError(403, Codes.FORBIDDEN, f"{target_server} did not sign the invite")
        return countersigned

    # --- remote users, our rooms --------------------------------------------------------------

    def on_make(self, membership: str, origin: str, room_id: str, user_id: str, versions: list) -> dict:
        """make_join / make_leave / make_knock: a template of the member event to sign."""
        self._check_user_of(origin, user_id)
        room = self.rooms.get_room(room_id)
        if room is None or not self.fed_events.is_host_in_room(room_id):
            raise MatrixError(404, Codes.NOT_FOUND, "Unknown room")
        if membership in ("join", "knock") and room.room_version not in versions:
            raise MatrixError(400, Codes.INCOMPATIBLE_ROOM_VERSION,
                              f"Your server does not support room version {room.room_version}",
                              room_version=room.room_version)
        if membership == "knock" and not get_room_version(room.room_version).knocking:
            raise MatrixError(400, Codes.INCOMPATIBLE_ROOM_VERSION, "This room version has no knocking",
                              room_version=room.room_version)
        content = {"membership": membership}
        if membership == "join":
            authoriser = self.restricted_authoriser(room_id, user_id)
            if authoriser is not None:
                content["join_authorised_via_users_server"] = authoriser
        _, pdu = self.creation.build_for_remote(room_id, user_id, "m.room.member", content, user_id)
        return {"room_version": room.room_version, "event": pdu}

    def on_send(self, membership: str, origin: str, room_id: str, event_id: str, pdu) -> dict:
        """send_join / send_leave / send_knock: the signed event, checked and persisted like
        any PDU, then passed on to the other servers in the room."""
        room = self.rooms.get_room(room_id)
        if room is None or not self.fed_events.is_host_in_room(room_id):
            raise MatrixError(404, Codes.NOT_FOUND, "Unknown room")
        room_version = get_room_version(room.room_version)
        try:
            event = self.fed_events.parse_pdu(room_version, pdu)
        except PduRejected as e:
            raise MatrixError(400, Codes.BAD_JSON, str(e)) from None
        if event.event_id != event_id or event.room_id != room_id:
            raise MatrixError(400, Codes.BAD_JSON, "The event does not match the path")
        if event.type != "m.room.member" or event.membership != membership or event.state_key != event.sender:
            raise MatrixError(400, Codes.BAD_JSON, f"Not a {membership} of the sender")
        self._check_user_of(origin, event.sender)
        authoriser = event.content.get("join_authorised_via_users_server") if membership == "join" else None
        if isinstance(authoriser, str) and server_name_of(authoriser) == self.server_name:
            # We vouch for this restricted join: our signature is what the auth rules ask for.
            event = event_from_pdu(room_version, sign_event(room_version, event.pdu, self.server_name,
                                                            self.signing_key))
        with self.creation.room_lock(room_id):
            try:
                outcome, state_before = self.fed_events.receive_checked(origin, room_id, event)
            except PduRejected as e:
                raise MatrixError(403, Codes.FORBIDDEN, str(e)) from None
        if outcome != "timeline":
            raise MatrixError(403, Codes.FORBIDDEN, f"The {membership} is not allowed by the room's current state")
        if self.sender is not None:
            others = [s for s in self.rooms.get_joined_servers(room_id) if s not in (origin, self.server_name)]
            self.sender.send_pdu(event, others)
        if membership == "join":
            return self._join_answer(room_id, event, state_before)
        if membership == "knock":
            return {"knock_room_state": self._stripped_state(room_id)}
        return {}

    def _join_answer(self, room_id: str, event, state_before: dict) -> dict:
        state_ids = list(state_before.values())
        chain_ids = self.fed_store.get_auth_chain_ids([*state_ids, *event.auth_event_ids])
        loaded = self.events.get_events([*state_ids, *chain_ids])
        return {"origin": self.server_name, "event": event.pdu, "members_omitted": False,
                "state": [federation_pdu(loaded[i]) for i in state_ids if i in loaded],
                "auth_chain": [federation_pdu(loaded[i]) for i in chain_ids if i in loaded],
                "servers_in_room": self.rooms.get_joined_servers(room_id)}

    def _stripped_state(self, room_id: str) -> list:
        current = self.state.get_current_state_ids(room_id, STRIPPED_KEYS)
        loaded = self.events.get_events(current.values())
        return [stripped_state_event(loaded[eid].effective_event) for eid in current.values() if eid in loaded]

    def on_invite(self, origin: str, room_id: str, event_id: str, body) -> dict:
        """/v2/invite: a remote server invites one of our users; we counter-sign."""
        if not isinstance(body, dict) or not isinstance(body.get("event"), dict):
            raise MatrixError(400, Codes.BAD_JSON, "event is required")
        room_version = get_room_version(str(body.get("room_version", "1")))
        if room_version is None:
            raise MatrixError(400, Codes.INCOMPATIBLE_ROOM_VERSION, "Unsupported room version",
                              room_version=str(body.get("room_version")))
        try:
            event = self.fed_events.parse_pdu(room_version, body["event"])
        except PduRejected as e:
            raise MatrixError(400, Codes.BAD_JSON, str(e)) from None
        if event.event_id != event_id or event.room_id != room_id:
            raise MatrixError(400, Codes.BAD_JSON, "The event does not match the path")
        if event.type != "m.room.member" or event.membership != "invite" or not isinstance(event.state_key, str):
            raise MatrixError(400, Codes.BAD_JSON, "Not an invite")
        if server_name_of(event.state_key) != self.server_name:
            raise MatrixError(400, Codes.INVALID_PARAM, "The invitee is not a user of this server")
        self._check_user_of(origin, event.sender)
        try:
            event = self.fed_events.check_signatures(event)
        except PduRejected as e:
            raise MatrixError(403, Codes.FORBIDDEN, str(e)) from None
        signed = event_from_pdu(room_version, sign_event(room_version, event.pdu, self.server_name, self.signing_key))
        if not self.fed_events.is_host_in_room(room_id):
            stripped = body.get("invite_room_state")
            self._store_membership_outside(room_id, room_version, event_from_pdu(room_version, dict(signed.pdu)),
                                           stripped if isinstance(stripped, list) else [])
        return {"event": signed.pdu}

    def check_room_access(self, origin: str, room_id: str) -> None:
        """The room's server ACL applies to every room-scoped federation request."""
        if not self.fed_events.server_allowed(origin, room_id):
            raise MatrixError(403, Codes.FORBIDDEN, "Server ACL denies your server")

    def _check_user_of(self, origin: str, user_id) -> None:
        try:
            if server_name_of(user_id) == origin:
                return
        except ValueError:
            pass
        raise MatrixError(403, Codes.FORBIDDEN, f"{user_id!r} is not a user of {origin}")


def federation_pdu(stored) -> dict:
    """A stored event as other servers are sent it: redacted if it was, without local data."""
    pdu = dict(stored.effective_event.pdu)
    pdu.pop("unsigned", None)
    return pdu


def _valid_stripped(events: list) -> list:
    return [e for e in events if isinstance(e, dict) and isinstance(e.get("type"), str)][:50]


def _client_error(error: FederationHttpError, server: str, otherwise: MatrixError) -> MatrixError:
    """What a client is told when another server refused: its 400, 403 or 404 as it gave them;
    anything else (its 401 about our signature, its 5xx) as `otherwise`, a 4xx the endpoint
    documents, since the client's request itself was fine and retrying it may work."""
    if error.status in (400, 403, 404) and error.errcode:
        return MatrixError(error.status, error.errcode, _remote_message(error, server))
    return otherwise


def _remote_message(error: FederationHttpError, server: str) -> str:
    body = error.body if isinstance(error.body, dict) else {}
    return str(body.get("error") or f"{server} refused the request ({error.status})")
