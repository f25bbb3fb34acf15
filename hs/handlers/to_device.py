"""Send-to-device messaging (client-server API "Send-to-Device messaging"): PUT
/sendToDevice/{eventType}/{txnId}, and /sync's `to_device` section.

Sending (the master only, `SendToDeviceHandler`): each message to each device gets its own id
of the to_device stream and waits in that device's inbox (hs/storage/to_device.py). `*` stands
for every device the user has now, and a message to a device by name takes precedence over `*`
for that device. A device that does not exist gets nothing (as in Synapse): messages are not
kept for devices that might appear later. A retry with the same transaction ID from the same
device stores nothing new.

Messages to users of other servers go to the federation sender (`federation_sender`, set on the
master when it sends federation), one m.direct_to_device EDU per server, delivered at least once
and in order; without a sender they are logged and dropped. Messages to an invalid user ID are
skipped with a log line, as Synapse does; a body of the wrong shape is 400 M_BAD_JSON.

Receiving (any process that serves /sync, `DeviceInbox`): a sync gets the device's messages
after its `since`, at most MAX_PER_SYNC of them, and first deletes those up to `since`, which the
client acknowledged by sending it. So a client that retries with an old `since` gets the same
messages again, and each message is kept until acknowledged.
"""

import logging

from hs.clock import now_ms
from hs.errors import Codes, MatrixError
from hs.events.canonical_json import json_has_nul
from hs.identifiers import user_id_parts

logger = logging.getLogger(__name__)

# As Synapse: more than this waits for the next sync, which the client makes at once.
MAX_PER_SYNC = 100
WILDCARD = "*"


class SendToDeviceHandler:
    def __init__(self, server_name: str, store, devices, stream, stream_notifier):
        self.server_name = server_name
        self.store = store
        self.devices = devices  # DeviceStore: the targets of `*`
        self.stream = stream
        # Wakes a recipient's parked syncs once the stream has passed their message.
        self.stream_notifier = stream_notifier
        self.federation_sender = None  # hs/federation/sender.py, on the master when it federates

    def send(self, requester, event_type: str, txn_id: str, body: dict) -> None:
        for name, value in (("eventType", event_type), ("txnId", txn_id)):
            if "\x00" in value:
                raise MatrixError(400, Codes.INVALID_PARAM, f"{name} may not contain NUL")
        messages = _check_messages(body)
        targets: list[tuple[str, str, dict]] = []
        remote: dict[str, dict] = {}  # server name -> {user_id: {device_id: content}}
        for user_id, by_device in messages.items():
            server_name = _server_name(user_id)
            if server_name is None:
                # As Synapse: one bad recipient does not fail the others' messages.
                logger.warning("Ignoring to-device message(s) from %s to invalid user ID %r",
                               requester.user_id, user_id)
                continue
            if server_name != self.server_name:
                if self.federation_sender is None:
                    logger.info("Dropping %d to-device message(s) of type %s from %s to remote user %s: "
                                "federation sending is off", len(by_device), event_type, requester.user_id, user_id)
                else:
                    remote.setdefault(server_name, {})[user_id] = by_device
                continue
            contents = dict(by_device)
            if WILDCARD in contents:
                everyone = contents.pop(WILDCARD)
                for device in self.devices.get_devices(user_id):
                    contents.setdefault(device.device_id, everyone)
            targets += [(user_id, device_id, content) for device_id, content in contents.items()]
        for server_name, by_user in remote.items():
            self.federation_sender.send_to_device(requester.user_id, requester.device_id, txn_id, event_type,
                                                  server_name, by_user)
        if not targets:
            return
        with self.stream.get_next_mult(len(targets)) as ids:
            rows = [(stream_id, user_id, device_id, {"type": event_type, "sender": requester.user_id,
                                                     "content": content})
                    for stream_id, (user_id, device_id, content) in zip(ids, targets, strict=True)]
            if self.store.add_messages(requester.user_id, requester.device_id, txn_id, now_ms(), rows):
                for user_id in {t[0] for t in targets}:
                    self.stream_notifier.written(ids[-1], users=[user_id])


def _check_messages(body: dict) -> dict:
    if "messages" not in body:
        raise MatrixError(400, Codes.MISSING_PARAM, "Missing parameter: messages")
    messages = body["messages"]
    if not isinstance(messages, dict):
        raise MatrixError(400, Codes.BAD_JSON, "messages must be an object")
    for user_id, by_device in messages.items():
        if not isinstance(by_device, dict):
            raise MatrixError(400, Codes.BAD_JSON, f"messages[{user_id!r}] must be an object")
        for device_id, content in by_device.items():
            if not device_id or not isinstance(content, dict):
                raise MatrixError(400, Codes.BAD_JSON,
                                  f"messages[{user_id!r}] must map device IDs to objects")
    if json_has_nul(messages):
        raise MatrixError(400, Codes.BAD_JSON, "Strings must not contain NUL")
    return messages


def _server_name(user_id: str) -> str | None:
    try:
        return user_id_parts(user_id)[1]
    except MatrixError:
        return None


class DeviceInbox:
    """The read side: what a device's /sync gets."""

    def __init__(self, store):
        self.store = store

    def sync_events(self, user_id: str, device_id: str, since: int | None, now: int) -> tuple[list[dict], int]:
        """(messages in (since, now] for the device, the to_device position the response hands out):
        `now`, or the last message sent when there were more than MAX_PER_SYNC."""
        if since is not None:
            # A position beyond ours (a token from elsewhere) must not delete what is not sent yet.
            since = min(since, now)
            if since > 0:
                self.store.delete_messages(user_id, device_id, since)
            if since == now:
                return [], now  # the stream has not moved (a long-poll's wake-up for something else)
        rows = self.store.get_messages(user_id, device_id, since or 0, now, MAX_PER_SYNC)
        position = rows[-1][0] if len(rows) == MAX_PER_SYNC else now
        return [message for _, message in rows], position
