"""The Falcon app every process builds: Matrix errors, CORS, authentication, the access log."""

import functools
import json
import logging
import re
import time
from urllib.parse import unquote

import falcon
import falcon.media

from hs import metrics
from hs.errors import Codes, InteractiveAuthRequired, MatrixError

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("hs.access")

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, HEAD, POST, PUT, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "X-Requested-With, Content-Type, Authorization, Date",
    "Access-Control-Expose-Headers": "ETag, Content-Disposition",
}


class Resource:
    """Base for every resource: who may call which method.

    Authentication happens once in the middleware, before the responder runs, so no responder
    can forget it: a method not listed in `public` or `optional_auth` requires a valid token,
    and guests may call only the methods in `guest_access`. `allow_expired` methods accept an
    expired access token (logging out must work with one).
    """

    public: frozenset = frozenset()
    optional_auth: frozenset = frozenset()
    guest_access: frozenset = frozenset()
    allow_expired: frozenset = frozenset()

    def __init_subclass__(cls, **kwargs):
        # HEAD is GET without the body (Falcon drops the body of a HEAD response), and it is
        # authenticated as GET is (see MatrixMiddleware.process_resource).
        super().__init_subclass__(**kwargs)
        for name in dir(cls):
            if name == "on_get" or name.startswith("on_get_"):
                head = "on_head" + name[len("on_get"):]
                if not hasattr(cls, head):
                    setattr(cls, head, _head_from_get(name))


def _head_from_get(get_name: str):
    def on_head(self, req, resp, **params):
        getattr(self, get_name)(req, resp, **params)
    return on_head


@functools.cache
def _responder_methods(cls) -> frozenset:
    return frozenset(name[3:].split("_", 1)[0].upper() for name in dir(cls) if name.startswith("on_"))


def _has_responder(resource, method: str) -> bool:
    return method in _responder_methods(type(resource))


_ESCAPE = re.compile(r"%(25|2F)", re.IGNORECASE)


def _route_path(raw_path: str) -> str:
    """The path to route on, with each segment decoded except that '/' stays '%2F' (and so
    '%' stays '%25'): a user ID such as @a/b:example.org is one path segment."""
    return "/".join(unquote(seg, errors="replace").replace("%", "%25").replace("/", "%2F")
                    for seg in raw_path.split("/"))


def _unescape_param(value: str) -> str:
    return _ESCAPE.sub(lambda m: "%" if m.group(1) == "25" else "/", value)


# Which listener resources (`resources: [{names: [...]}]`) serve a path, by prefix (the first
# that matches). As in Synapse, `client` and `federation` listeners serve the media API too, and
# a `media` listener serves the client and federation APIs' media paths.
_RESOURCE_PREFIXES = (("/_matrix/client/v1/media/", {"client", "media"}),
                      ("/_matrix/federation/v1/media/", {"federation", "media"}),
                      ("/_matrix/client/", {"client"}), ("/_synapse/", {"client"}), ("/.well-known/", {"client"}),
                      ("/_matrix/federation/", {"federation"}), ("/_matrix/key/", {"federation"}),
                      ("/_matrix/media/", {"media", "client", "federation"}), ("/metrics", {"metrics"}),
                      ("/_hs/replication/", {"replication"}), ("/_hs/status", {"status"}))


def _param_values(*mappings):
    for mapping in mappings:
        for value in mapping.values():
            yield from (value if isinstance(value, list) else [value])


def _resource_names(path: str) -> set:
    return next((names for prefix, names in _RESOURCE_PREFIXES if path.startswith(prefix)), set())


class MatrixMiddleware:
    def __init__(self, auth, max_body_size: int, listeners: list):
        self.auth = auth
        self.max_body_size = max_body_size
        self.x_forwarded_ports = {str(lst.port) for lst in listeners if lst.x_forwarded}
        # A listener serves only the resources it names (a `type: metrics` one, metrics alone);
        # a port bound by hand serves all.
        self.resources_by_port = {str(lst.port): lst.resources if lst.type == "http" else {"metrics"}
                                  for lst in listeners if lst.type in ("http", "metrics")}

    def process_request(self, req, resp):
        req.context.start = time.monotonic()
        req.context.requester = None
        req.context.max_body_size = self.max_body_size
        req.context.client_ip = self._client_ip(req)
        # WSGI hands Falcon the path already decoded, so an encoded '/' inside an ID would split
        # it into two segments; gunicorn keeps the path as sent in RAW_URI.
        raw_uri = req.env.get("RAW_URI", "")
        raw_path = raw_uri.split("?", 1)[0]
        req.context.escaped_path = raw_path.startswith("/") and "%2f" in raw_path.lower()
        if req.context.escaped_path:
            req.path = _route_path(raw_path)
        if req.method == "OPTIONS":
            # Browsers preflight every cross-origin request, to any path.
            resp.status = falcon.HTTP_200
            resp.media = {}
            resp.complete = True
            return
        served = self.resources_by_port.get(req.env.get("SERVER_PORT"))
        names = _resource_names(req.path)
        # Every listener answers /_hs/status (to loopback peers only: see hs/api/status.py).
        if served is not None and "status" not in names and not names & served:
            raise MatrixError(404, Codes.UNRECOGNIZED, "Unrecognized request")

    def _client_ip(self, req):
        if req.env.get("SERVER_PORT") in self.x_forwarded_ports:
            forwarded = req.get_header("X-Forwarded-For")
            if forwarded:
                return forwarded.split(",")[0].strip()
        return req.remote_addr

    def process_resource(self, req, resp, resource, params):
        if req.context.get("escaped_path"):
            for name, value in params.items():
                params[name] = _unescape_param(value)
        if resource is None or req.method == "OPTIONS":
            return
        if req.method not in falcon.COMBINED_METHODS:
            # Falcon answers an unknown method on a known path with a bare 400.
            raise MatrixError(405, Codes.UNRECOGNIZED, "Unrecognized request",
                              headers={"Allow": ", ".join(sorted(_responder_methods(type(resource))))})
        method = req.method if req.method != "HEAD" else "GET"
        if method in resource.public or not _has_responder(resource, method):
            return  # a method the resource lacks is answered 405 whoever asks
        if getattr(resource, "server_auth", False):
            # Another server, not a user: an X-Matrix signature (hs/api/federation/base.py).
            self.auth.servers.authenticate(req)
            # Room, event and user IDs go to PostgreSQL, whose text cannot hold NUL.
            if any("\x00" in v for v in _param_values(params, req.params)):
                raise MatrixError(400, Codes.INVALID_PARAM, "Parameters cannot contain NUL")
            return
        token = self.auth.token_from_request(req)
        if token is None and method in resource.optional_auth:
            return
        requester = self.auth.authenticate(token, req, allow_expired=method in resource.allow_expired)
        if requester.is_guest and method not in resource.guest_access:
            raise MatrixError(403, Codes.GUEST_ACCESS_FORBIDDEN, "Guest access not allowed")
        req.context.requester = requester

    def process_response(self, req, resp, resource, req_succeeded):
        resp.set_headers(CORS_HEADERS)
        requester = req.context.get("requester")
        elapsed_ms = (time.monotonic() - req.context.get("start", time.monotonic())) * 1000
        # The query string is left out: it may hold an access token.
        access_logger.info('%s - %s "%s %s" %s %.1fms', req.context.get("client_ip") or "-",
                           requester.user_id if requester else "-", req.method, req.path,
                           resp.status.split(" ", 1)[0] if isinstance(resp.status, str) else resp.status,
                           elapsed_ms)


def _matrix_error(req, resp, ex, params):
    resp.status = ex.status
    resp.media = ex.to_json()
    for name, value in ex.headers.items():
        resp.set_header(name, value)


def _interactive_auth(req, resp, ex, params):
    resp.status = 401
    resp.media = ex.body


def _http_error(req, resp, ex, params):
    if isinstance(ex, (falcon.HTTPRouteNotFound, falcon.HTTPNotFound)):
        resp.status, resp.media = 404, {"errcode": Codes.UNRECOGNIZED, "error": "Unrecognized request"}
    elif isinstance(ex, falcon.HTTPMethodNotAllowed):
        resp.status, resp.media = 405, {"errcode": Codes.UNRECOGNIZED, "error": "Unrecognized request"}
        resp.set_headers(ex.headers or {})
    else:
        resp.status = ex.status
        resp.media = {"errcode": Codes.UNKNOWN, "error": ex.title or "Error"}


def _unexpected_error(req, resp, ex, params):
    if isinstance(ex, falcon.HTTPError):
        return _http_error(req, resp, ex, params)
    logger.exception("Unhandled error in %s %s", req.method, req.path)
    resp.status = 500
    resp.media = {"errcode": Codes.UNKNOWN, "error": "Internal server error"}


class MetricsResource(Resource):
    """GET /metrics: Prometheus' text format. Unauthenticated, as Synapse's: expose it only on a
    listener Prometheus alone reaches (`type: metrics`, or the `metrics` resource)."""

    public = frozenset({"GET"})

    def on_get(self, req, resp):
        resp.data, resp.content_type = metrics.render()


def build_app(auth, config) -> falcon.App:
    """An app with the Matrix conventions; callers add their resources with app.add_route."""
    app = falcon.App(middleware=[metrics.RequestMetrics(),
                                 MatrixMiddleware(auth, config.max_request_body_size, config.listeners)],
                     cors_enable=False)
    # A worker's config names its app and worker; the master's names neither.
    metrics.set_process(getattr(config, "worker_app", "master"), getattr(config, "worker_name", "master"))
    app.add_route("/metrics", MetricsResource())
    dumps = functools.partial(json.dumps, ensure_ascii=False, separators=(",", ":"))
    app.resp_options.media_handlers[falcon.MEDIA_JSON] = falcon.media.JSONHandler(dumps=dumps)
    app.req_options.strip_url_path_trailing_slash = False
    # Handlers are searched most-specific first, so the order here does not matter.
    app.add_error_handler(Exception, _unexpected_error)
    app.add_error_handler(falcon.HTTPError, _http_error)
    app.add_error_handler(MatrixError, _matrix_error)
    app.add_error_handler(InteractiveAuthRequired, _interactive_auth)
    return app
