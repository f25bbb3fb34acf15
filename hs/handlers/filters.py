"""Filters: upload and download (/user/{userId}/filter), and the `filter` query parameter of
/sync and /messages turned into parsed filters for the handlers that serve them.

Errors: an invalid filter in a request body is 400 M_BAD_JSON (the body is JSON, but not a
valid filter); in a query parameter it is 400 M_INVALID_PARAM, as is a filter ID the user
does not have (Synapse answers both so). Downloading a filter that is not the requester's own
is 404, exactly like one that does not exist: the spec documents only 404 for the download.
"""

from hs.caches import LruCache
from hs.errors import Codes, MatrixError
from hs.events.canonical_json import json_has_nul
from hs.filtering import (
    DEFAULT_FILTER,
    Filter,
    FilterError,
    RoomEventFilter,
    parse_filter,
    resolve_filter_param,
    room_event_filter_from_param,
)


class FilterHandler:
    def __init__(self, filters):
        self.filters = filters
        # Parsed filters by (user_id, filter_id). Stored filters are never changed or deleted
        # (the spec has no API for it), so an entry never goes stale.
        self._parsed = LruCache("parsed_filters", 10_000,
                                invalidated_by="nothing: a stored filter is immutable")
        # (user_id, filter) -> filter ID: a worker sends it to the master instead.
        self.store_filter = filters.add_filter

    def upload(self, requester, user_id: str, body: dict) -> str:
        if requester.user_id != user_id:
            raise MatrixError(403, Codes.FORBIDDEN, "You may only create filters for yourself")
        try:
            parse_filter(body)
        except FilterError as e:
            raise MatrixError(400, Codes.BAD_JSON, f"Invalid filter: {e}") from None
        if json_has_nul(body):
            # Valid JSON, but PostgreSQL's jsonb cannot hold it.
            raise MatrixError(400, Codes.BAD_JSON, "Invalid filter: strings must not contain NUL")
        return self.store_filter(user_id, body)

    def download(self, requester, user_id: str, filter_id: str) -> dict:
        stored = self.filters.get_filter(user_id, filter_id) if requester.user_id == user_id else None
        if stored is None:
            raise MatrixError(404, Codes.NOT_FOUND, "No such filter")
        return stored

    def get_filter(self, user_id: str, filter_id: str) -> Filter | None:
        """The user's stored filter, parsed; None when the user has no filter by that ID."""
        key = (user_id, filter_id)
        parsed = self._parsed.get(key)
        if parsed is None:
            stored = self.filters.get_filter(user_id, filter_id)
            if stored is None:
                return None
            parsed = parse_filter(stored)
            self._parsed.put(key, parsed)
        return parsed

    def sync_filter(self, user_id: str, raw: str | None) -> Filter:
        """/sync's `filter` parameter (inline JSON or one of the user's filter IDs), parsed;
        the default filter when it is absent."""
        if raw is None:
            return DEFAULT_FILTER
        if not raw.startswith("{"):
            found = self.get_filter(user_id, raw)
            if found is None:
                raise MatrixError(400, Codes.INVALID_PARAM, f"No such filter: {raw}")
            return found
        try:
            return resolve_filter_param(raw, lambda _: None)
        except FilterError as e:
            raise MatrixError(400, Codes.INVALID_PARAM, f"Invalid filter: {e}") from None

    @staticmethod
    def room_event_filter(raw: str | None) -> RoomEventFilter | None:
        """The `filter` parameter of /messages and /context (a RoomEventFilter as JSON); None
        when absent."""
        if raw is None:
            return None
        try:
            return room_event_filter_from_param(raw)
        except FilterError as e:
            raise MatrixError(400, Codes.INVALID_PARAM, f"Invalid filter: {e}") from None
