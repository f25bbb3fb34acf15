"""Account data: per-user JSON by type, global (room_id '') or per room; tags are the room
account data of type m.tag. Each write moves the row to a new position of the account data
stream, which /sync reads changes from."""

import json

from hs.storage.database import Database

TAG_TYPE = "m.tag"


def _dump(content) -> str:
    return json.dumps(content, ensure_ascii=False, allow_nan=False)


class AccountDataStore:
    def __init__(self, db: Database):
        self.db = db

    def get(self, user_id: str, room_id: str, data_type: str) -> dict | None:
        rows = self.db.execute("get_account_data",
                               "SELECT content FROM account_data WHERE user_id = %s AND room_id = %s AND type = %s",
                               (user_id, room_id, data_type))
        return rows[0][0] if rows else None

    def put(self, user_id: str, room_id: str, data_type: str, content: dict, stream_id: int) -> None:
        self.db.execute("put_account_data",
                        "INSERT INTO account_data (user_id, room_id, type, content, stream_id)"
                        " VALUES (%s, %s, %s, %s::jsonb, %s)"
                        " ON CONFLICT (user_id, room_id, type) DO UPDATE"
                        " SET content = EXCLUDED.content, stream_id = EXCLUDED.stream_id",
                        (user_id, room_id, data_type, _dump(content), stream_id))

    def add_tag(self, user_id: str, room_id: str, tag: str, content: dict, stream_id: int) -> None:
        # Read-modify-write in one statement: concurrent tag changes on one room never lose
        # each other. An m.tag set through the generic endpoint may hold no `tags` object;
        # it then gets one.
        self.db.execute("add_tag",
                        "INSERT INTO account_data (user_id, room_id, type, content, stream_id)"
                        " VALUES (%(user)s, %(room)s, %(type)s,"
                        "         jsonb_build_object('tags', jsonb_build_object(%(tag)s, %(content)s::jsonb)),"
                        "         %(stream)s)"
                        " ON CONFLICT (user_id, room_id, type) DO UPDATE"
                        " SET content = CASE WHEN jsonb_typeof(account_data.content) = 'object'"
                        "                    THEN account_data.content ELSE '{}'::jsonb END"
                        "     || jsonb_build_object('tags',"
                        "            CASE WHEN jsonb_typeof(account_data.content -> 'tags') = 'object'"
                        "                 THEN account_data.content -> 'tags' ELSE '{}'::jsonb END"
                        "            || jsonb_build_object(%(tag)s, %(content)s::jsonb)),"
                        "     stream_id = EXCLUDED.stream_id",
                        {"user": user_id, "room": room_id, "type": TAG_TYPE, "tag": tag,
                         "content": _dump(content), "stream": stream_id})

    def remove_tag(self, user_id: str, room_id: str, tag: str, stream_id: int) -> bool:
        """Whether the tag was there (and is now gone)."""
        def txn(cur):
            cur.execute("UPDATE account_data SET content = content #- ARRAY['tags', %(tag)s],"
                        " stream_id = %(stream)s"
                        " WHERE user_id = %(user)s AND room_id = %(room)s AND type = %(type)s"
                        " AND jsonb_typeof(content -> 'tags') = 'object' AND content -> 'tags' ? %(tag)s",
                        {"user": user_id, "room": room_id, "type": TAG_TYPE, "tag": tag, "stream": stream_id})
            return cur.rowcount > 0
        return self.db.run_txn("remove_tag", txn)

    def get_stream_rows(self, from_id: int, upto_id: int, limit: int | None) -> list[tuple[int, dict]]:
        """For replication: (stream_id, {"user_id"}) of the rows written in (from_id, upto_id]. A
        row rewritten since shows once, at its latest id."""
        rows = self.db.execute("get_account_data_stream_rows",
                               "SELECT stream_id, user_id FROM account_data WHERE stream_id > %s AND stream_id <= %s"
                               " ORDER BY stream_id LIMIT %s", (from_id, upto_id, limit))
        return [(r[0], {"user_id": r[1]}) for r in rows]

    def get_changes(self, user_id: str, since: int | None, upto: int,
                    room_ids: list[str] | None = None) -> list[tuple[str, str, dict, int]]:
        """(room_id, type, content, stream_id) of the user's rows written in (since, upto]
        (all up to `upto` when since is None), oldest first: global rows when room_ids is None,
        else the rows of those rooms."""
        if room_ids is not None and not room_ids:
            return []
        where = "room_id = ''" if room_ids is None else "room_id = ANY(%(rooms)s)"
        rows = self.db.execute("get_account_data_changes",
                               "SELECT room_id, type, content, stream_id FROM account_data"
                               f" WHERE user_id = %(user)s AND {where}"
                               " AND stream_id > %(since)s AND stream_id <= %(upto)s ORDER BY stream_id",
                               {"user": user_id, "rooms": room_ids, "since": since or 0, "upto": upto})
        return [tuple(r) for r in rows]
