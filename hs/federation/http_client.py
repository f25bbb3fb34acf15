"""Outbound requests to other homeservers: discovery, TLS, X-Matrix signing, JSON answers.

- Where: hs/federation/discovery.py turns the server name into endpoints, tried in order while
  a connection cannot be made.
- Which addresses: every connection resolves its host itself and connects only to an address
  `federation_ip_range_blacklist` allows (hs.push.outbound.IpFilter, so nothing re-resolves
  between the check and the connect). As Synapse, `ip_range_whitelist` exempts addresses of DNS
  names only: an IP literal is checked against the blacklist alone, else a server name could
  name an internal address outright.
- TLS: at least 1.2, SNI with the certificate name (none for an IP literal, which the
  certificate must hold instead), the Host header set to the server name. Certificates are
  verified unless `federation_verify_certificates` is false, against `federation_custom_ca_list`
  when given, which replaces the system's CAs as in Synapse (a private federation trusts its own
  CA only).
- Who: never our own server name, never a name outside `federation_domain_whitelist`.
- One urllib3 pool per endpoint keeps connections open for reuse; no redirects, no proxies,
  timeouts from `federation.client_timeout`. Sockets come from the `socket` module, which
  gunicorn's gevent worker has patched, so a slow peer parks only its own greenlet.
"""

import logging
import ssl
import threading
from collections import OrderedDict
from urllib.parse import quote, urlencode, urlsplit

import urllib3
from urllib3.connection import HTTPSConnection
from urllib3.exceptions import NewConnectionError

from hs import __version__
from hs.events.canonical_json import decode_json, encode_json
from hs.federation.discovery import Endpoint, ServerDiscovery
from hs.federation.request_auth import build_authorization_header
from hs.federation.server_name import ip_literal
from hs.push.outbound import IpFilter

logger = logging.getLogger(__name__)

__all__ = ["FederationClient", "FederationDenied", "FederationHttpError", "FederationRequestError",
           "FederationUnreachable"]

USER_AGENT = f"gevent-homeserver/{__version__}"
CONNECT_TIMEOUT_S = 10.0
MAX_RESPONSE_BYTES = 100 * 1024 * 1024  # as Synapse: a whole room state can be big
WELL_KNOWN_MAX_BYTES = 50 * 1024
MAX_POOLS = 1000
POOL_CONNECTIONS = 10


class FederationRequestError(Exception):
    """The request did not give an answer we can use."""


class FederationHttpError(FederationRequestError):
    """The peer answered with a status other than 2xx."""

    def __init__(self, message: str, status: int, errcode: str | None = None, body: dict | None = None):
        super().__init__(message)
        self.status, self.errcode, self.body = status, errcode, body


class FederationUnreachable(FederationRequestError):
    """No answer: DNS, connection, TLS or timeout failure, or a body that is not a JSON object or list."""


class FederationDenied(FederationRequestError):
    """We do not federate with that server: outside federation_domain_whitelist, or ourselves."""


class _FilteredHTTPSConnection(HTTPSConnection):
    """Connects through an IpFilter: only to addresses of `host` the filter allows."""

    def __init__(self, *args, ip_filter: IpFilter, **kwargs):
        super().__init__(*args, **kwargs)
        self.ip_filter = ip_filter

    def _new_conn(self):
        try:
            return self.ip_filter.connect(self._dns_host, self.port, self.timeout, self.source_address,
                                          self.socket_options)
        except (OSError, UnicodeError) as e:  # UnicodeError: a name IDNA refuses (an empty label: "..")
            raise NewConnectionError(self, f"Failed to establish a new connection: {e}") from e


class _Pool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _FilteredHTTPSConnection


def make_ssl_context(config) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # urllib3 matches the certificate name itself (assert_hostname): that also covers IP literals.
    context.check_hostname = False
    if not config.federation_verify_certificates:
        context.verify_mode = ssl.CERT_NONE
    elif config.federation_custom_ca_list:
        for path in config.federation_custom_ca_list:
            context.load_verify_locations(cafile=path)
    else:
        context.load_default_certs()
    return context


class FederationClient:
    def __init__(self, config, signing_key, *, discovery: ServerDiscovery | None = None):
        self.server_name = config.server_name
        self.signing_key = signing_key
        self.domain_whitelist = config.federation_domain_whitelist
        self.timeout_s = config.federation_client_timeout_ms / 1000
        self.verify = config.federation_verify_certificates
        if not self.verify:
            # Asked for in the config: not worth a warning on every request.
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        self.ssl_context = make_ssl_context(config)
        self.name_filter = IpFilter(config.federation_ip_range_blacklist, config.ip_range_whitelist)
        self.literal_filter = IpFilter(config.federation_ip_range_blacklist, [])
        self.discovery = discovery or ServerDiscovery(self._https_get)
        self._pools = OrderedDict()  # Endpoint -> _Pool, least recently used first
        self._pools_lock = threading.Lock()

    def get_json(self, destination: str, path: str, args=None, *, timeout_s=None):
        return self._request("GET", destination, path, args, None, timeout_s=timeout_s)

    def put_json(self, destination: str, path: str, body, args=None, *, timeout_s=None):
        return self._request("PUT", destination, path, args, body, timeout_s=timeout_s)

    def post_json(self, destination: str, path: str, body, args=None, *, timeout_s=None):
        return self._request("POST", destination, path, args, body, timeout_s=timeout_s)

    def get_json_unsigned(self, destination: str, path: str, args=None, *, timeout_s=None):
        """For key fetches: the peer may not have our key yet, and has no reason to ask for it."""
        return self._request("GET", destination, path, args, None, timeout_s=timeout_s, signed=False)

    def get_stream(self, destination: str, path: str, args=None, *, timeout_s=None):
        """A signed GET whose answer is not JSON (media): (status, headers with lower-cased names,
        the urllib3 response with its body unread), whatever the status. The caller reads the
        body (`.stream(n)`) within its own size limit and must `release_conn()` or `close()` it."""
        return self._request("GET", destination, path, args, None, timeout_s=timeout_s, stream=True)

    def check_destination(self, destination: str) -> None:
        """FederationDenied if we must not send to `destination`."""
        if destination == self.server_name:
            raise FederationDenied("refusing to send a federation request to ourselves")
        if self.domain_whitelist is not None and destination not in self.domain_whitelist:
            raise FederationDenied(f"{destination} is not in federation_domain_whitelist")

    def _request(self, method: str, destination: str, path: str, args, body, *, timeout_s=None, signed=True,
                 stream=False):
        self.check_destination(destination)
        uri = path + ("?" + urlencode(args, doseq=True, quote_via=quote) if args else "")
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        data = None
        if body is not None:
            data = encode_json(body)
            headers["Content-Type"] = "application/json"
        if signed:
            headers["Authorization"] = build_authorization_header(self.server_name, destination, self.signing_key,
                                                                  method, uri, body)
        try:
            endpoints = self.discovery.resolve(destination)
        except Exception as e:  # DiscoveryError, or the resolver's own failure
            raise FederationUnreachable(f"{destination}: cannot resolve: {e}") from None
        timeout = urllib3.Timeout(total=timeout_s or self.timeout_s,
                                  connect=min(CONNECT_TIMEOUT_S, timeout_s or self.timeout_s))
        what = f"{method} {destination}{path}"
        errors = []
        for endpoint in endpoints:
            try:
                status, answer_headers, raw = self._send(endpoint, method, uri, data, headers, timeout,
                                                         None if stream else MAX_RESPONSE_BYTES)
            except _NotConnected as e:  # nothing was sent: the next endpoint may do
                errors.append(f"{endpoint.host}:{endpoint.port}: {e}")
                continue
            except _Failed as e:
                raise FederationUnreachable(f"{what}: {e}") from None
            return (status, answer_headers, raw) if stream else _answer(what, status, raw)
        raise FederationUnreachable(f"{what}: cannot connect: {'; '.join(errors) or 'no endpoint'}")

    def _send(self, endpoint: Endpoint, method: str, uri: str, data, headers: dict, timeout, limit: int):
        """(status, headers, body) of one request to `endpoint`; with no `limit`, the body is the
        unread response."""
        pool = self._pool(endpoint)
        for attempt in (1, 2):
            try:
                resp = pool.urlopen(method, uri, body=data, headers={**headers, "Host": endpoint.host_header},
                                    retries=False, redirect=False, assert_same_host=False, timeout=timeout,
                                    preload_content=False)
                break
            except (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError,
                    urllib3.exceptions.SSLError) as e:
                raise _NotConnected(_reason(e)) from None
            except urllib3.exceptions.ProtocolError as e:
                # Mostly a kept-alive connection the peer closed meanwhile: once more, on a new
                # one (federation requests are idempotent: transactions have ids).
                if attempt == 2:
                    raise _Failed(_reason(e)) from None
            except (urllib3.exceptions.HTTPError, OSError) as e:
                raise _Failed(_reason(e)) from None
        if limit is None:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp
        try:
            raw = resp.read(limit + 1)
            if len(raw) > limit:
                resp.close()  # the rest is left unread, so the connection cannot be reused
                raise _Failed(f"answer larger than {limit} bytes")
            resp.release_conn()
        except (urllib3.exceptions.HTTPError, OSError) as e:
            resp.close()
            raise _Failed(_reason(e)) from None
        return resp.status, {k.lower(): v for k, v in resp.headers.items()}, raw

    def _https_get(self, url: str):
        """One unsigned GET of an https URL, for the well-known look-up (discovery follows
        redirects itself)."""
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname:
            raise FederationUnreachable(f"not an https URL: {url}")
        host_header = parts.netloc.rpartition("@")[2]
        endpoint = Endpoint(parts.hostname, parts.port or 443, parts.hostname, host_header)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        timeout = urllib3.Timeout(total=min(self.timeout_s, 30.0), connect=CONNECT_TIMEOUT_S)
        try:
            return self._send(endpoint, "GET", path, None, {"User-Agent": USER_AGENT}, timeout,
                              WELL_KNOWN_MAX_BYTES)
        except (_NotConnected, _Failed) as e:
            raise FederationUnreachable(f"GET {url}: {e}") from None

    def _pool(self, endpoint: Endpoint) -> _Pool:
        with self._pools_lock:
            pool = self._pools.get(endpoint)
            if pool is not None:
                self._pools.move_to_end(endpoint)
                return pool
            literal = ip_literal(endpoint.host) is not None
            tls = {"assert_hostname": endpoint.tls_name} if self.verify else {"cert_reqs": "CERT_NONE",
                                                                              "assert_hostname": False}
            pool = _Pool(endpoint.host, endpoint.port, maxsize=POOL_CONNECTIONS, block=False, retries=False,
                         ssl_context=self.ssl_context, server_hostname=endpoint.tls_name,
                         ip_filter=self.literal_filter if literal else self.name_filter, **tls)
            self._pools[endpoint] = pool
            while len(self._pools) > MAX_POOLS:
                _, old = self._pools.popitem(last=False)
                old.close()
            return pool


class _NotConnected(Exception):
    """No connection could be made, so the request was not sent."""


class _Failed(Exception):
    """The request may have been sent, but no usable answer came."""


def _reason(error: Exception) -> str:
    # urllib3 nests the cause (NewConnectionError inside MaxRetryError, SSL errors inside SSLError).
    reason = getattr(error, "reason", None)
    return str(reason or error)


def _answer(what: str, status: int, raw: bytes):
    try:
        body = decode_json(raw) if raw.strip() else None
    except (ValueError, RecursionError):
        body = None
        if 200 <= status < 300:
            raise FederationUnreachable(f"{what}: answered {status} with a body that is not JSON") from None
    if not 200 <= status < 300:
        errcode = body.get("errcode") if isinstance(body, dict) and isinstance(body.get("errcode"), str) else None
        raise FederationHttpError(f"{what}: answered {status} {errcode or ''}".rstrip(), status, errcode,
                                  body if isinstance(body, dict) else None)
    if not isinstance(body, (dict, list)):
        raise FederationUnreachable(f"{what}: answered {status} with JSON that is neither an object nor a list")
    return body
