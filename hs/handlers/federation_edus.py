"""EDUs received in a /send transaction: typing, receipts, presence, device list and signing
key updates, to-device messages (server-server API "EDUs").

Every EDU speaks for users of its origin only: one naming a user of another server is skipped.
A malformed EDU is skipped with a log line and never fails the transaction; unknown types are
ignored (the spec lets servers define their own).

Every EDU here is a write only the master makes (typing lives in its memory; receipts, presence,
device lists and to-device messages are its streams), so `on_edu` runs on the master; a
federation_reader worker serving /send forwards each EDU, (origin, edu_type, content), to it.
"""

import logging

from hs.clock import now_ms
from hs.federation.server_name import server_name_of
from hs.handlers.sync import PRESENCE_STATES
from hs.storage.presence import UserPresence

logger = logging.getLogger(__name__)

WILDCARD = "*"
FEDERATED_RECEIPT_TYPES = ("m.read",)


class _Skip(Exception):
    """This EDU (or part of it) is malformed or not the origin's to send."""


def _server_of(user_id) -> str:
    if not isinstance(user_id, str) or not user_id.startswith("@"):
        raise _Skip(f"not a user ID: {user_id!r}")
    try:
        return server_name_of(user_id)
    except ValueError:
        raise _Skip(f"not a user ID: {user_id!r}") from None


def _dict(value, what: str) -> dict:
    if not isinstance(value, dict):
        raise _Skip(f"{what} is not an object")
    return value


class FederationEduHandler:
    def __init__(self, server_name: str, rooms, events, typing, receipts, presence_writer, remote_device_lists,
                 devices, to_device_stream, to_device_notifier, edu_store):
        self.server_name = server_name
        self.rooms = rooms
        self.events = events
        self.typing = typing
        self.receipts = receipts
        self.presence_writer = presence_writer
        self.remote_device_lists = remote_device_lists
        self.devices = devices
        self.to_device_stream = to_device_stream
        self.to_device_notifier = to_device_notifier
        self.edu_store = edu_store
        # fn(origin, room_id) -> bool: the room's server ACL (set by hs/server.py); typing and
        # receipts are about a room, and a server the room denies has no say in it.
        self.server_allowed = lambda origin, room_id: True
        self._handlers = {
            "m.typing": self._on_typing,
            "m.receipt": self._on_receipt,
            "m.presence": self._on_presence,
            "m.device_list_update": self._on_device_list_update,
            "m.signing_key_update": self._on_signing_key_update,
            "m.direct_to_device": self._on_direct_to_device,
        }

    def on_edu(self, origin: str, edu_type: str, content) -> None:
        handler = self._handlers.get(edu_type)
        if handler is None:
            return
        try:
            handler(origin, _dict(content, "content"))
        except _Skip as e:
            logger.info("Skipping %s EDU from %s: %s", edu_type, origin, e)

    # --- checks --------------------------------------------------------------------------------------

    def _check_user(self, origin: str, user_id) -> str:
        if _server_of(user_id) != origin:
            raise _Skip(f"{user_id} is not a user of {origin}")
        return user_id

    def _check_in_room(self, origin: str, user_id: str, room_id) -> None:
        if not isinstance(room_id, str):
            raise _Skip(f"not a room ID: {room_id!r}")
        if not self.server_allowed(origin, room_id):
            raise _Skip(f"the server ACL of {room_id} denies {origin}")
        membership = self.rooms.get_membership(room_id, user_id)
        if membership is None or membership[0] != "join":
            raise _Skip(f"{user_id} is not joined to {room_id}")

    def _check_shares_a_room(self, user_id: str) -> None:
        """Only users of rooms we are in: anything else is nothing our users may see."""
        if not self.rooms.get_rooms_for_user(user_id):
            raise _Skip(f"{user_id} shares no room with us")

    # --- the EDUs ------------------------------------------------------------------------------------

    def _on_typing(self, origin: str, content: dict) -> None:
        user_id = self._check_user(origin, content.get("user_id"))
        typing = content.get("typing")
        if not isinstance(typing, bool):
            raise _Skip("typing is not a boolean")
        self._check_in_room(origin, user_id, content.get("room_id"))
        self.typing.set_remote_typing(content["room_id"], user_id, typing)

    def _on_receipt(self, origin: str, content: dict) -> None:
        """{room_id: {receipt_type: {user_id: {"event_ids": [...], "data": {...}}}}}; each receipt
        on its own, so one bad entry does not lose the others."""
        for room_id, by_type in content.items():
            for receipt_type, by_user in (by_type.items() if isinstance(by_type, dict) else ()):
                if receipt_type not in FEDERATED_RECEIPT_TYPES or not isinstance(by_user, dict):
                    continue
                for user_id, receipt in by_user.items():
                    try:
                        self._apply_receipt(origin, room_id, receipt_type, user_id, _dict(receipt, "receipt"))
                    except _Skip as e:
                        logger.info("Skipping a receipt from %s: %s", origin, e)

    def _apply_receipt(self, origin: str, room_id: str, receipt_type: str, user_id: str, receipt: dict) -> None:
        self._check_user(origin, user_id)
        self._check_in_room(origin, user_id, room_id)
        event_ids = receipt.get("event_ids")
        if not isinstance(event_ids, list) or not event_ids or not all(isinstance(e, str) for e in event_ids):
            raise _Skip("event_ids is not a non-empty list of event IDs")
        data = receipt.get("data", {})
        if not isinstance(data, dict):
            raise _Skip("data is not an object")
        thread_id = data.get("thread_id")
        if thread_id is not None and (not isinstance(thread_id, str) or not thread_id):
            raise _Skip("thread_id is not a string")
        # We keep one receipt per user: the newest of the events named that we hold in the room.
        stored = [s for s in self.events.get_events(event_ids).values()
                  if s.event.room_id_in_any_version == room_id and s.stream_ordering > 0]
        if not stored:
            raise _Skip(f"none of {event_ids} is an event of {room_id} we hold")
        newest = max(stored, key=lambda s: s.stream_ordering)
        self.receipts.put_receipt(user_id, room_id, receipt_type, newest.event.event_id, newest.stream_ordering,
                                  thread_id, data)

    def _on_presence(self, origin: str, content: dict) -> None:
        push = content.get("push")
        if not isinstance(push, list):
            raise _Skip("push is not a list")
        now = now_ms()
        for entry in push:
            try:
                self._apply_presence(origin, _dict(entry, "a push entry"), now)
            except _Skip as e:
                logger.info("Skipping a presence update from %s: %s", origin, e)

    def _apply_presence(self, origin: str, entry: dict, now: int) -> None:
        user_id = self._check_user(origin, entry.get("user_id"))
        state = entry.get("presence")
        if state not in PRESENCE_STATES:
            raise _Skip(f"presence {state!r} is not one of {PRESENCE_STATES}")
        ago = entry.get("last_active_ago")
        if ago is not None and (isinstance(ago, bool) or not isinstance(ago, int) or ago < 0):
            raise _Skip("last_active_ago is not a non-negative integer")
        status_msg = entry.get("status_msg")
        if status_msg is not None and not isinstance(status_msg, str):
            raise _Skip("status_msg is not a string")
        self._check_shares_a_room(user_id)
        self.presence_writer.set_remote_presence(UserPresence(
            user_id, state, status_msg, now - ago if ago is not None else 0,
            entry.get("currently_active") is True))

    def _on_device_list_update(self, origin: str, content: dict) -> None:
        """Applied to our copy of the user's device list, or a resync of it when an update was
        missed (hs/handlers/remote_device_lists.py); local clients are told to refetch keys."""
        user_id = self._check_user(origin, content.get("user_id"))
        device_id = content.get("device_id")
        if not isinstance(device_id, str):
            raise _Skip("device_id is not a string")
        stream_id = content.get("stream_id")
        if isinstance(stream_id, bool) or not isinstance(stream_id, (int, str)):
            raise _Skip("stream_id is not an integer")
        prev_ids = content.get("prev_id", [])
        if not isinstance(prev_ids, list) or not all(isinstance(p, (int, str)) and not isinstance(p, bool)
                                                     for p in prev_ids):
            raise _Skip("prev_id is not a list of stream IDs")
        self._check_shares_a_room(user_id)
        self.remote_device_lists.on_device_list_update(
            user_id, device_id, str(stream_id), [str(p) for p in prev_ids], content.get("deleted") is True,
            content.get("keys"), content.get("device_display_name"))

    def _on_signing_key_update(self, origin: str, content: dict) -> None:
        """Updates the user's public cross-signing keys in our copy of their device list (what a
        key query answers for them) and marks their device list as changed."""
        user_id = self._check_user(origin, content.get("user_id"))
        keys = {}
        for key_type, usage in (("master", "master"), ("self_signing", "self_signing")):
            key = content.get(f"{key_type}_key")
            if key is None:
                continue
            key = _dict(key, f"{key_type}_key")
            if key.get("user_id") != user_id or usage not in (key.get("usage") or ()):
                raise _Skip(f"{key_type}_key is not {user_id}'s {usage} key")
            if not isinstance(key.get("keys"), dict) or not key["keys"]:
                raise _Skip(f"{key_type}_key has no keys")
            keys[key_type] = key
        if not keys:
            raise _Skip("no key")
        self._check_shares_a_room(user_id)
        self.remote_device_lists.on_signing_key_update(user_id, keys)

    def _on_direct_to_device(self, origin: str, content: dict) -> None:
        sender = self._check_user(origin, content.get("sender"))
        event_type, message_id = content.get("type"), content.get("message_id")
        if not isinstance(event_type, str) or not isinstance(message_id, str) or not message_id:
            raise _Skip("type and message_id must be strings")
        messages = _dict(content.get("messages"), "messages")
        rows = []
        for user_id, by_device in messages.items():
            try:
                if _server_of(user_id) != self.server_name:
                    raise _Skip(f"{user_id} is not a user of ours")
                by_device = dict(_dict(by_device, f"messages[{user_id}]"))
            except _Skip as e:
                logger.info("Skipping to-device messages from %s: %s", origin, e)
                continue
            if WILDCARD in by_device:
                everyone = by_device.pop(WILDCARD)
                for device in self.devices.get_devices(user_id):
                    by_device.setdefault(device.device_id, everyone)
            rows += [(user_id, device_id, message) for device_id, message in by_device.items()
                     if isinstance(message, dict)]
        if not rows:
            self.edu_store.add_remote_to_device(origin, message_id, now_ms(), [])
            return
        with self.to_device_stream.get_next_mult(len(rows)) as ids:
            stored = [(stream_id, user_id, device_id, {"type": event_type, "sender": sender, "content": message})
                      for stream_id, (user_id, device_id, message) in zip(ids, rows, strict=True)]
            if self.edu_store.add_remote_to_device(origin, message_id, now_ms(), stored):
                self.to_device_notifier.written(ids[-1], users=sorted({row[0] for row in rows}))
