"""Inbound requests from other servers: X-Matrix authentication (/server-server-api#request-authentication).

Every responder of a FederationResource runs only for a request another server signed: the
app's middleware (hs/api/app.py) sees `server_auth` and calls `hs.auth.servers.authenticate`
(a FederationAuthenticator, set up in hs/server.py) instead of checking an access token, so a new
federation endpoint cannot forget it. Responders read the origin from `req.context.origin`, and
may read the body with json_body as usual (it is read once here, for the signature, and kept).
"""

import io
import logging
from urllib.parse import quote

from hs.api.app import Resource
from hs.api.request import read_body
from hs.clock import now_ms
from hs.errors import Codes, MatrixError
from hs.events.canonical_json import decode_json
from hs.events.signing import SignatureVerifyError
from hs.federation.keyring import KeyLookupError
from hs.federation.request_auth import parse_authorization_header, verify_request
from hs.federation.server_name import parse_server_name

logger = logging.getLogger(__name__)


class FederationResource(Resource):
    """Base of the resources other servers call with signed requests."""

    server_auth = True


class FederationAuthenticator:
    def __init__(self, hs):
        self.hs = hs
        self.server_name = hs.config.server_name
        self.domain_whitelist = hs.config.federation_domain_whitelist

    def authenticate(self, req) -> str:
        """Sets and returns `req.context.origin`: 401 M_UNAUTHORIZED without a valid signature of
        this request (method, URI as sent, destination, body), 403 M_FORBIDDEN for an origin
        outside federation_domain_whitelist."""
        try:
            auth = parse_authorization_header(req.get_header("Authorization"))
            parse_server_name(auth.origin)
        except ValueError as e:
            raise MatrixError(401, Codes.UNAUTHORIZED, f"Missing or invalid X-Matrix authorization: {e}") from None
        if auth.destination is not None and auth.destination != self.server_name:
            raise MatrixError(401, Codes.UNAUTHORIZED, "Destination mismatch in auth header")
        # Before any key is fetched: a server we do not federate with costs us nothing.
        if self.domain_whitelist is not None and auth.origin not in self.domain_whitelist:
            raise MatrixError(403, Codes.FORBIDDEN, f"Federation denied with {auth.origin}")
        content = _signed_content(req)
        try:
            keys = self.hs.keyring.get_verify_keys(auth.origin, [auth.key], now_ms())
            if auth.key not in keys:
                raise KeyLookupError(f"no valid key {auth.key} of {auth.origin}")
            verify_request(auth, req.method, _raw_uri(req), self.server_name, content, keys[auth.key])
        except (KeyLookupError, SignatureVerifyError) as e:
            logger.info("refused request from %s: %s", auth.origin, e)
            raise MatrixError(401, Codes.UNAUTHORIZED, f"Invalid signature from {auth.origin}: {e}") from None
        req.context.origin = auth.origin
        # It answers, so it is up: what we queued for it need not wait for its backoff.
        self.hs.wake_destination(auth.origin)
        return auth.origin


def _raw_uri(req) -> str:
    """The path and query as the client sent them: what it signed. gunicorn and our TLS listener
    give RAW_URI; elsewhere rebuild it."""
    raw = req.env.get("RAW_URI")
    if raw:
        return raw
    query = req.env.get("QUERY_STRING")
    return quote(req.env.get("PATH_INFO", req.path), safe="/:@!$&'()*+,;=-._~") + (f"?{query}" if query else "")


def _signed_content(req):
    """The JSON body (None without one), which the signature covers. The body is put back as a
    fresh stream so the responder can read it again."""
    if req.content_length in (None, 0) and "chunked" not in (req.get_header("Transfer-Encoding") or "").lower():
        return None
    data = read_body(req, req.context.max_body_size)
    req.stream = req.env["wsgi.input"] = io.BytesIO(data)
    req._bounded_stream = None  # Falcon wraps (and caches) wsgi.input on first use: wrap the new one
    if not data.strip():
        return None
    try:
        return decode_json(data)
    except (ValueError, RecursionError):
        raise MatrixError(400, Codes.NOT_JSON, "Content not JSON.") from None
