"""Reporting rooms and events to the server's administrators (client-server API "Reporting
content"). Reports are stored in event_reports for the admin API to read.

Who may report what: an event only by a member joined to its room who can see it (404
otherwise, so a report reveals nothing about events the reporter cannot read); a room by
anyone, as long as the room exists.
"""

from hs.clock import now_ms
from hs.errors import Codes, MatrixError

MAX_REASON_LENGTH = 10_000


def _check_reason(reason, required: bool) -> str | None:
    if reason is None:
        if required:
            raise MatrixError(400, Codes.MISSING_PARAM, "Missing parameter: reason")
        return None
    if not isinstance(reason, str):
        raise MatrixError(400, Codes.BAD_JSON, "reason must be a string")
    if len(reason) > MAX_REASON_LENGTH:
        raise MatrixError(400, Codes.INVALID_PARAM, f"reason may be at most {MAX_REASON_LENGTH} characters")
    if "\x00" in reason:
        # PostgreSQL text cannot hold NUL.
        raise MatrixError(400, Codes.INVALID_PARAM, "reason must not contain NUL")
    return reason


class ReportHandler:
    def __init__(self, store, rooms, events, reads):
        self.store = store
        self.rooms = rooms
        self.events = events
        self.reads = reads

    def report_event(self, requester, room_id: str, event_id: str, body: dict) -> None:
        reason = _check_reason(body.get("reason"), required=False)
        score = body.get("score")
        if score is not None and (isinstance(score, bool) or not isinstance(score, int) or not -100 <= score <= 0):
            raise MatrixError(400, Codes.INVALID_PARAM, "score must be an integer from -100 to 0")
        not_found = MatrixError(404, Codes.NOT_FOUND,
                                "The event was not found or you are not joined to the room")
        user_id = requester.user_id
        membership = self.rooms.get_membership(room_id, user_id)
        if membership is None or membership[0] != "join":
            raise not_found
        stored = self.events.get_event(event_id)
        if stored is None or stored.event.room_id_in_any_version != room_id:
            raise not_found
        if not self.reads.visible(user_id, [stored], self.reads.access(user_id, room_id)):
            raise not_found
        self.store.add_report(room_id=room_id, event_id=event_id, user_id=user_id, reason=reason, score=score,
                              now_ms=now_ms())

    def report_room(self, requester, room_id: str, body: dict) -> None:
        reason = _check_reason(body.get("reason"), required=True)
        if self.rooms.get_room(room_id) is None:
            raise MatrixError(404, Codes.NOT_FOUND, "The room was not found")
        self.store.add_report(room_id=room_id, event_id=None, user_id=requester.user_id, reason=reason,
                              score=None, now_ms=now_ms())


