"""User-Interactive Authentication: flows of stages, completed across requests in one session.

A session is bound to the method and path of the request that opened it and finishes at most
one operation: the session is deleted when its last stage completes, so replaying it fails.
"""

import secrets

from hs.clock import now_ms
from hs.errors import Codes, InteractiveAuthRequired, MatrixError
from hs.handlers.login_identifier import user_id_from_identifier

DUMMY = "m.login.dummy"
PASSWORD = "m.login.password"
REGISTRATION_TOKEN = "m.login.registration_token"
SWEEP_INTERVAL_MS = 60_000


class UiaHandler:
    def __init__(self, server_name, store, accounts, hasher, registration_tokens, failed_login_limiter,
                 session_lifetime_ms):
        self.server_name = server_name
        self.store = store
        self.accounts = accounts
        self.hasher = hasher
        self.registration_tokens = registration_tokens
        self.failed_login_limiter = failed_login_limiter
        self.session_lifetime_ms = session_lifetime_ms
        self._last_sweep_ms = 0

    def check(self, req, body: dict, flows: list[list[str]], params: dict | None = None,
              *, user_id: str | None = None) -> dict:
        """Returns {stage: result} once a whole flow is complete; otherwise raises the 401 that
        tells the client what is left. `user_id` is whose password a password stage must match."""
        params = params or {}
        auth = body.get("auth")
        if auth is not None and not isinstance(auth, dict):
            raise MatrixError(400, Codes.BAD_JSON, "auth must be an object")
        session = self._session_for(req, auth)
        if session.completed in flows:
            # Another request finished this session's flow and is about to consume it.
            raise MatrixError(400, Codes.UNKNOWN, "Unknown session ID")
        if not auth or "type" not in auth:
            raise InteractiveAuthRequired(self._progress(flows, params, session))
        stage = auth["type"]
        if not isinstance(stage, str) or not any(self._is_next(flow, session.completed, stage) for flow in flows):
            raise InteractiveAuthRequired({**self._progress(flows, params, session),
                                           "errcode": Codes.UNRECOGNIZED,
                                           "error": f"Stage {stage!r} is not the next one of any flow"})
        try:
            result = self._run_stage(stage, auth, user_id, req)
        except MatrixError as e:
            if e.status != 401:
                raise
            raise InteractiveAuthRequired({**self._progress(flows, params, session), **e.to_json()}) from None
        self.store.mark_stage_completed(session.session_id, stage, result)
        session.completed.append(stage)
        session.stage_results[stage] = result
        if session.completed not in flows:
            raise InteractiveAuthRequired(self._progress(flows, params, session))
        if not self.store.delete_session(session.session_id):
            raise MatrixError(400, Codes.UNKNOWN, "Unknown session ID")
        return session.stage_results

    @staticmethod
    def _is_next(flow, completed, stage):
        return flow[:len(completed)] == completed and len(flow) > len(completed) and flow[len(completed)] == stage

    @staticmethod
    def _progress(flows, params, session) -> dict:
        body = {"flows": [{"stages": f} for f in flows], "params": params, "session": session.session_id}
        if session.completed:
            body["completed"] = list(session.completed)
        return body

    def _session_for(self, req, auth):
        now = now_ms()
        session_id = auth.get("session") if auth else None
        if session_id is None:
            # Every unauthenticated first request leaves a row: sweep expired ones now and then,
            # not only when a client comes back with a session that has gone.
            if now - self._last_sweep_ms > SWEEP_INTERVAL_MS:
                self._last_sweep_ms = now
                self.store.delete_expired(now - self.session_lifetime_ms)
            session_id = secrets.token_urlsafe(24)
            self.store.create_session(session_id, now, req.method, req.path, _requester_id(req))
            return self.store.get_session(session_id)
        if not isinstance(session_id, str):
            raise MatrixError(400, Codes.BAD_JSON, "auth.session must be a string")
        # No stored session ID has a NUL (and PostgreSQL text cannot be asked about one).
        session = self.store.get_session(session_id) if "\x00" not in session_id else None
        if session is None or session.created_ts + self.session_lifetime_ms < now:
            self.store.delete_expired(now - self.session_lifetime_ms)
            raise MatrixError(400, Codes.UNKNOWN, "Unknown session ID")
        if (session.method, session.uri, session.user_id) != (req.method, req.path, _requester_id(req)):
            raise MatrixError(403, Codes.FORBIDDEN,
                              "Requested operation has changed during the UI authentication session")
        return session

    def _run_stage(self, stage, auth, user_id, req):
        if stage == DUMMY:
            return True
        if stage == REGISTRATION_TOKEN:
            token = auth.get("token")
            if not isinstance(token, str) or not self.registration_tokens.is_valid(token, now_ms()):
                raise MatrixError(401, Codes.UNAUTHORIZED, "Invalid registration token")
            return token
        if stage == PASSWORD:
            return self._check_password(auth, user_id, req)
        raise MatrixError(401, Codes.UNRECOGNIZED, f"Unsupported stage {stage}")

    def _check_password(self, auth, user_id, req):
        claimed = user_id_from_identifier(auth, self.server_name)
        password = auth.get("password")
        if not isinstance(password, str):
            raise MatrixError(400, Codes.BAD_JSON, "password must be a string")
        if user_id is None:
            raise MatrixError(401, Codes.FORBIDDEN, "No account to check a password against")
        # The same key as /login uses, so failures here and there add up.
        limiter_key = user_id.lower()
        self.failed_login_limiter.check(limiter_key, consume=False)
        user = self.accounts.get_user(user_id)
        # The identifier, if given, must name the account being changed: a password of another
        # account proves nothing about this one.
        ok = (user is not None and (claimed is None or claimed.lower() == user_id.lower())
              and self.hasher.verify(user.password_hash, password))
        if not ok:
            self.failed_login_limiter.check(limiter_key)
            raise MatrixError(401, Codes.FORBIDDEN, "Invalid password")
        return user_id


def _requester_id(req) -> str | None:
    requester = req.context.get("requester")
    return requester.user_id if requester else None
