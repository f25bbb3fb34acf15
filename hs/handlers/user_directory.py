"""POST /user_directory/search: the users a requester may find.

As Synapse with `search_all_users: false`: users who share a joined room with the requester,
or who are joined to a room that is public (join rule) or world-readable, as the spec asks at
a minimum. Matched case-insensitively against the localpart and the display name; every word
of the search term must match one of them.
"""

from hs.errors import Codes, MatrixError

DEFAULT_LIMIT = 10
# Synapse's cap: a directory search is a typeahead, not a way to list every user.
MAX_LIMIT = 50


class UserDirectoryHandler:
    def __init__(self, store):
        self.store = store

    def search(self, requester, search_term, limit) -> dict:
        if search_term is None:
            raise MatrixError(400, Codes.MISSING_PARAM, "Missing parameter: search_term")
        if not isinstance(search_term, str):
            raise MatrixError(400, Codes.BAD_JSON, "search_term must be a string")
        if limit is None:
            limit = DEFAULT_LIMIT
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise MatrixError(400, Codes.BAD_JSON, "limit must be an integer")
        limit = max(0, min(limit, MAX_LIMIT))
        # NUL cannot reach PostgreSQL text and is in no name: it only separates words.
        words = search_term.replace("\x00", " ").lower().split()
        if not words or limit == 0:
            return {"results": [], "limited": False}
        found = self.store.search_user_directory(requester.user_id, words, limit + 1)
        results = []
        for user in found[:limit]:
            entry = {"user_id": user.user_id}
            if user.displayname is not None:
                entry["display_name"] = user.displayname
            if user.avatar_url is not None:
                entry["avatar_url"] = user.avatar_url
            results.append(entry)
        return {"results": results, "limited": len(found) > limit}
