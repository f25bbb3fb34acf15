"""The Falcon app every process builds: Matrix errors, CORS, authentication, the access log."""

import functools
import json
import logging
import time

import falcon
import falcon.media

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
    """Base for every resource: which methods skip authentication, which accept it optionally.

    Authentication happens once in the middleware, before the responder runs, so no responder
    can forget it: a method not listed in `public` or `optional_auth` requires a valid token.
    """

    public: frozenset = frozenset()
    optional_auth: frozenset = frozenset()


@functools.cache
def _responder_methods(cls) -> frozenset:
    return frozenset(name[3:].split("_", 1)[0].upper() for name in dir(cls) if name.startswith("on_"))


def _has_responder(resource, method: str) -> bool:
    return method in _responder_methods(type(resource))


class MatrixMiddleware:
    def __init__(self, auth, max_body_size: int, x_forwarded_ports: set):
        self.auth = auth
        self.max_body_size = max_body_size
        self.x_forwarded_ports = x_forwarded_ports

    def process_request(self, req, resp):
        req.context.start = time.monotonic()
        req.context.requester = None
        req.context.max_body_size = self.max_body_size
        req.context.client_ip = self._client_ip(req)
        if req.method == "OPTIONS":
            # Browsers preflight every cross-origin request, to any path.
            resp.status = falcon.HTTP_200
            resp.media = {}
            resp.complete = True

    def _client_ip(self, req):
        if req.env.get("SERVER_PORT") in self.x_forwarded_ports:
            forwarded = req.get_header("X-Forwarded-For")
            if forwarded:
                return forwarded.split(",")[0].strip()
        return req.remote_addr

    def process_resource(self, req, resp, resource, params):
        if resource is None or req.method == "OPTIONS":
            return
        method = req.method if req.method != "HEAD" else "GET"
        if method in resource.public or not _has_responder(resource, method):
            return  # a method the resource lacks is answered 405 whoever asks
        token = self.auth.token_from_request(req)
        if token is None and method in resource.optional_auth:
            return
        req.context.requester = self.auth.authenticate(token, req)

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


def build_app(auth, config) -> falcon.App:
    """An app with the Matrix conventions; callers add their resources with app.add_route."""
    x_forwarded_ports = {str(lst.port) for lst in config.listeners if lst.x_forwarded}
    app = falcon.App(middleware=[MatrixMiddleware(auth, config.max_request_body_size, x_forwarded_ports)],
                     cors_enable=False)
    dumps = functools.partial(json.dumps, ensure_ascii=False, separators=(",", ":"))
    app.resp_options.media_handlers[falcon.MEDIA_JSON] = falcon.media.JSONHandler(dumps=dumps)
    app.req_options.strip_url_path_trailing_slash = False
    # Handlers are searched most-specific first, so the order here does not matter.
    app.add_error_handler(Exception, _unexpected_error)
    app.add_error_handler(falcon.HTTPError, _http_error)
    app.add_error_handler(MatrixError, _matrix_error)
    app.add_error_handler(InteractiveAuthRequired, _interactive_auth)
    return app
