"""User-interactive auth sessions, in the database so any process can continue one."""

import json
from dataclasses import dataclass

from hs.storage.database import Database


@dataclass
class UiaSession:
    session_id: str
    created_ts: int
    method: str
    uri: str
    user_id: str | None
    completed: list
    stage_results: dict


class UiaStore:
    def __init__(self, db: Database):
        self.db = db

    def create_session(self, session_id: str, now_ms: int, method: str, uri: str, user_id: str | None) -> None:
        self.db.execute("create_uia_session",
                        "INSERT INTO ui_auth_sessions (session_id, created_ts, method, uri, user_id)"
                        " VALUES (%s, %s, %s, %s, %s)", (session_id, now_ms, method, uri, user_id))

    def get_session(self, session_id: str) -> UiaSession | None:
        rows = self.db.execute("get_uia_session",
                               "SELECT session_id, created_ts, method, uri, user_id, completed, stage_results"
                               " FROM ui_auth_sessions WHERE session_id = %s", (session_id,))
        return UiaSession(*rows[0]) if rows else None

    def mark_stage_completed(self, session_id: str, stage: str, result) -> None:
        self.db.execute(
            "uia_stage_completed",
            "UPDATE ui_auth_sessions SET completed = completed || %s::jsonb,"
            " stage_results = stage_results || %s::jsonb WHERE session_id = %s",
            (json.dumps([stage]), json.dumps({stage: result}), session_id))

    def delete_session(self, session_id: str) -> bool:
        """True for the one caller that deleted it: a session finishes an operation only once."""
        rows = self.db.execute("delete_uia_session",
                               "DELETE FROM ui_auth_sessions WHERE session_id = %s RETURNING 1", (session_id,))
        return bool(rows)

    def delete_expired(self, before_ms: int) -> None:
        self.db.execute("expire_uia_sessions", "DELETE FROM ui_auth_sessions WHERE created_ts < %s", (before_ms,))
