"""Email 3PIDs (client-server "Adding Account Administrative Contact Information"): validating an
address by a link we email, binding it to the account, listing and unbinding.

The homeserver validates addresses itself (no identity server): requestToken mails a link to
the address; following it (GET, the link) or POSTing the token to `submit_url` validates the
session; /account/3pid/add (with UIA) binds the validated address. Unbinding an address also
removes the email pushers that send to it.
"""

import hashlib
import logging
import re
import secrets
from urllib.parse import urlencode

from hs.clock import now_ms
from hs.errors import Codes, MatrixError
from hs.push.mailer import MailError, validation_email

logger = logging.getLogger(__name__)

EMAIL = "email"
SUBMIT_TOKEN_PATH = "/_matrix/client/unstable/add_threepid/email/submit_token"
_CLIENT_SECRET = re.compile(r"^[0-9a-zA-Z.=_\-]{1,255}$")
# Deliberately loose (as Synapse's canonicalise_email): one @, something either side, no spaces.
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
MAX_EMAIL_CHARS = 254
MAX_NEXT_LINK_CHARS = 2048
THREEPID_IN_USE = "M_THREEPID_IN_USE"
THREEPID_AUTH_FAILED = "M_THREEPID_AUTH_FAILED"
THREEPID_NOT_FOUND = "M_THREEPID_NOT_FOUND"
THREEPID_MEDIUM_NOT_SUPPORTED = "M_THREEPID_MEDIUM_NOT_SUPPORTED"


def canonical_email(address) -> str:
    """The address as stored and compared (lower case, as Synapse), or the spec's M_INVALID_PARAM."""
    if not isinstance(address, str) or len(address) > MAX_EMAIL_CHARS or not _EMAIL.match(address.strip()):
        raise MatrixError(400, Codes.INVALID_PARAM, "Unable to parse email address")
    return address.strip().lower()


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class ThreepidHandler:
    def __init__(self, config, store, uia, mailer, limiter, pushers):
        self.config = config
        self.email = config.email
        self.store = store
        self.uia = uia
        self.mailer = mailer
        self.limiter = limiter
        self.pushers = pushers

    def request_email_token(self, body: dict) -> dict:
        if not self.email.enabled:
            raise MatrixError(400, THREEPID_MEDIUM_NOT_SUPPORTED, "Adding an email to your account is disabled "
                              "on this server")
        client_secret = body.get("client_secret")
        for key in ("client_secret", "email", "send_attempt"):
            if body.get(key) is None:
                raise MatrixError(400, Codes.MISSING_PARAM, f"Missing parameter: {key}")
        if not isinstance(client_secret, str) or not _CLIENT_SECRET.match(client_secret):
            raise MatrixError(400, Codes.INVALID_PARAM, "Invalid client_secret")
        send_attempt = body["send_attempt"]
        if isinstance(send_attempt, bool) or not isinstance(send_attempt, int):
            raise MatrixError(400, Codes.BAD_JSON, "send_attempt must be an integer")
        next_link = body.get("next_link")
        if next_link is not None and (not isinstance(next_link, str) or len(next_link) > MAX_NEXT_LINK_CHARS
                                      or not re.match(r"^https?://", next_link)):
            raise MatrixError(400, Codes.INVALID_PARAM, "next_link must be an http(s) URL")
        address = canonical_email(body["email"])
        if self.store.get_owner(EMAIL, address) is not None:
            raise MatrixError(400, THREEPID_IN_USE, "Email is already in use")
        # Per address, as Synapse's rc_3pid_validation: a link mailed to someone else's inbox
        # must not become a way to flood it.
        self.limiter.check(("email", address))
        token = secrets.token_urlsafe(32)
        now = now_ms()
        sid, send = self.store.start_session(secrets.token_urlsafe(18), EMAIL, address, client_secret, send_attempt,
                                             token_digest(token), next_link, now,
                                             now + self.email.validation_token_lifetime_ms)
        if send:
            link = self.submit_url() + "?" + urlencode({"token": token, "client_secret": client_secret, "sid": sid})
            subject, text, html = validation_email(self.email.app_name, link)
            try:
                self.mailer.send(address, subject, text, html)
            except MailError:
                logger.warning("Could not send the validation email for session %s", sid, exc_info=True)
                raise MatrixError(500, Codes.UNKNOWN, "Unable to send email") from None
        return {"sid": sid, "submit_url": self.submit_url()}

    def submit_url(self) -> str:
        return self.config.client_base_url().rstrip("/") + SUBMIT_TOKEN_PATH

    def submit_token(self, sid, client_secret, token) -> str | None:
        """Validates the session; returns its next_link (None when it has none). M_THREEPID_AUTH_FAILED
        when sid, client_secret and token do not match an unexpired session."""
        if not all(isinstance(v, str) and v for v in (sid, client_secret, token)):
            raise MatrixError(400, Codes.MISSING_PARAM, "sid, client_secret and token are required")
        ok, next_link = self.store.validate_session(sid, client_secret, token_digest(token), now_ms())
        if not ok:
            raise MatrixError(400, THREEPID_AUTH_FAILED, "The token is wrong or has expired")
        return next_link

    def add(self, req, requester, body: dict) -> None:
        for key in ("sid", "client_secret"):
            if body.get(key) is None:
                raise MatrixError(400, Codes.MISSING_PARAM, f"Missing parameter: {key}")
            if not isinstance(body[key], str):
                raise MatrixError(400, Codes.BAD_JSON, f"{key} must be a string")
        if not _CLIENT_SECRET.match(body["client_secret"]):
            raise MatrixError(400, Codes.INVALID_PARAM, "Invalid client_secret")
        self.uia.check(req, body, [["m.login.password"]], user_id=requester.user_id)
        outcome = self.store.bind_validated(body["sid"], body["client_secret"], requester.user_id, now_ms())
        if outcome == "no_session":
            raise MatrixError(400, THREEPID_AUTH_FAILED, "No validated 3pid session found")
        if outcome == "in_use":
            raise MatrixError(400, THREEPID_IN_USE, "Email is already in use")

    def list(self, requester) -> list[dict]:
        return self.store.get_threepids(requester.user_id)

    def delete(self, requester, body: dict) -> dict:
        medium, address = body.get("medium"), body.get("address")
        for key, value in (("medium", medium), ("address", address)):
            if value is None:
                raise MatrixError(400, Codes.MISSING_PARAM, f"Missing parameter: {key}")
            if not isinstance(value, str):
                raise MatrixError(400, Codes.BAD_JSON, f"{key} must be a string")
        if medium == EMAIL:
            address = address.strip().lower()
        # As Synapse: unbinding an address the account does not have is a success too.
        self.store.unbind(requester.user_id, medium, address)
        if medium == EMAIL:
            self.pushers.remove_email_pushers(requester.user_id, address)
        # We never bind at an identity server, so there is nothing to unbind there.
        return {"id_server_unbind_result": "no-support"}

    def on_deactivated(self, user_id: str) -> None:
        """A deactivated account keeps no address (it may be bound again by someone else)."""
        self.store.unbind_all(user_id)

    def is_bound(self, user_id: str, address: str) -> bool:
        return self.store.get_owner(EMAIL, address.strip().lower()) == user_id
