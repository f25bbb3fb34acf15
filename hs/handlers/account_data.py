"""Account data and room tags (/user/{userId}/account_data, /user/{userId}/rooms/{roomId}/...),
and their part of /sync: the top-level `account_data` and each joined room's `account_data`.

Only the user themself reads or writes their account data (403 otherwise). Tags are room
account data of type m.tag ({"tags": {tag: {...}}}), as Synapse stores them, so a tag change
reaches /sync as a new m.tag event for that room.

m.ignored_user_list is stored and synced like any other type: nothing yet hides the ignored
users' events or invites.

Limitation: an incremental sync carries the room account data written in (since, now]; a room
joined since `since` does not get the room's older account data (data set while not joined),
which only an initial sync (or full_state=true) sends.
"""

from hs.errors import Codes, MatrixError
from hs.events.canonical_json import json_has_nul
from hs.storage.account_data import TAG_TYPE

# The spec's 405: types the server controls. m.fully_read is set through /read_markers, and
# push rules through /pushrules (the spec requires refusing m.push_rules here since v1.10).
SERVER_CONTROLLED_TYPES = frozenset({"m.fully_read", "m.push_rules"})


class AccountDataHandler:
    def __init__(self, store, stream, notifier):
        self.store = store
        self.stream = stream
        self.notifier = notifier

    # --- the endpoints ---------------------------------------------------------------------------

    def set(self, requester, user_id: str, room_id: str | None, data_type: str, content: dict) -> None:
        self._check_user(requester, user_id, "add account data for")
        room = self._room(room_id)
        if data_type in SERVER_CONTROLLED_TYPES:
            raise MatrixError(405, Codes.BAD_JSON, f"Cannot set {data_type} through this API.")
        self._check_storable(content)
        with self.stream.get_next() as stream_id:
            self.store.put(user_id, room, data_type, content, stream_id)
            self.notifier.written(stream_id, users=[user_id])

    def set_by_server(self, user_id: str, room_id: str | None, data_type: str, content: dict) -> None:
        """For the server's own writers of the types clients may not set (m.fully_read from
        /read_markers): no requester check, no type check; synced and woken like any write."""
        with self.stream.get_next() as stream_id:
            self.store.put(user_id, room_id or "", data_type, content, stream_id)
            self.notifier.written(stream_id, users=[user_id])

    def get(self, requester, user_id: str, room_id: str | None, data_type: str) -> dict:
        self._check_user(requester, user_id, "get account data for")
        content = self.store.get(user_id, self._room(room_id), data_type)
        if content is None:
            raise MatrixError(404, Codes.NOT_FOUND, "Account data not found")
        return content

    def get_tags(self, requester, user_id: str, room_id: str) -> dict:
        self._check_user(requester, user_id, "get tags for")
        content = self.store.get(user_id, self._room(room_id), TAG_TYPE)
        tags = content.get("tags") if isinstance(content, dict) else None
        return {"tags": tags if isinstance(tags, dict) else {}}

    def add_tag(self, requester, user_id: str, room_id: str, tag: str, content: dict) -> None:
        self._check_user(requester, user_id, "add tags for")
        room = self._room(room_id)
        order = content.get("order")
        # tag.yaml: "A number in a range [0,1]".
        if "order" in content and (isinstance(order, bool) or not isinstance(order, (int, float))
                                   or not 0 <= order <= 1):
            raise MatrixError(400, Codes.BAD_JSON, "order must be a number between 0 and 1")
        self._check_storable(content)
        if "\x00" in tag:
            raise MatrixError(400, Codes.INVALID_PARAM, "Tag must not contain NUL")
        with self.stream.get_next() as stream_id:
            self.store.add_tag(user_id, room, tag, content, stream_id)
            self.notifier.written(stream_id, users=[user_id])

    def remove_tag(self, requester, user_id: str, room_id: str, tag: str) -> None:
        """Removing a tag the room does not have succeeds and changes nothing (as in Synapse)."""
        self._check_user(requester, user_id, "remove tags for")
        room = self._room(room_id)
        with self.stream.get_next() as stream_id:
            if self.store.remove_tag(user_id, room, tag, stream_id):
                self.notifier.written(stream_id, users=[user_id])

    @staticmethod
    def _check_user(requester, user_id: str, what: str) -> None:
        if requester.user_id != user_id:
            raise MatrixError(403, Codes.FORBIDDEN, f"Cannot {what} other users.")

    @staticmethod
    def _room(room_id: str | None) -> str:
        if room_id is None:
            return ""
        # v12 room IDs have no server name, so only the sigil is checked.
        if len(room_id) < 2 or not room_id.startswith("!") or "\x00" in room_id:
            raise MatrixError(400, Codes.INVALID_PARAM, f"{room_id!r} is not a valid room ID")
        return room_id

    @staticmethod
    def _check_storable(content: dict) -> None:
        if json_has_nul(content):
            raise MatrixError(400, Codes.BAD_JSON, "Strings must not contain NUL")

    # --- /sync -----------------------------------------------------------------------------------

    def sync_sections(self, user_id: str, since: int | None, now: int, room_ids: list[str],
                      sync_filter) -> tuple[list[dict], dict[str, list[dict]]]:
        """(global account data events, {room_id: room account data events}) written in
        (since, now] (everything up to `now` when since is None), for the rooms in `room_ids`,
        after the filter's `account_data` and `room.account_data`."""
        global_filter = sync_filter.account_data
        events = []
        if not global_filter.blocks_all():
            events = self._limited(global_filter, global_filter.filter(
                {"type": t, "content": c} for _, t, c, _ in self.store.get_changes(user_id, since, now)))
        room_filter = sync_filter.room.account_data
        rooms: dict[str, list[dict]] = {}
        wanted = [r for r in room_ids if room_filter.includes_room(r)]
        if wanted and not room_filter.blocks_all():
            for room_id, t, c, _ in self.store.get_changes(user_id, since, now, wanted):
                event = {"type": t, "content": c}
                if room_filter.matches(event, room_id):
                    rooms.setdefault(room_id, []).append(event)
            rooms = {r: self._limited(room_filter, e) for r, e in rooms.items()}
        return events, rooms

    @staticmethod
    def _limited(event_filter, events: list[dict]) -> list[dict]:
        # The most recently written ones: what changed last is what a client most needs.
        if event_filter.limit is None or len(events) <= event_filter.limit:
            return events
        return events[len(events) - event_filter.limit:]
