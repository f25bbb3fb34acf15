"""Which address to connect to for a server name (/server-server-api#resolving-server-names).

1. An IP literal, or a name with an explicit port: that host and port (8448 by default), no
   look-ups.
2. Else `https://<host>/.well-known/matrix/server`; its `m.server` (`host[:port]`) delegates:
   an IP literal or explicit port is used as is, else SRV records of the delegated host, else
   its port 8448. The Host header and certificate name become the delegated host.
3. Without a usable well-known: SRV `_matrix-fed._tcp.<host>`, then the deprecated
   `_matrix._tcp.<host>`, else `<host>:8448`.

A well-known answer is cached as its Cache-Control/Expires say (24 h without either; kept
between 5 min and 48 h, as Synapse), a failed look-up for an hour; SRV answers by their TTL in
dnspython's cache.
"""

import email.utils
import json
import logging
import random
import re
import threading
import time
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import dns.exception
import dns.resolver

from hs.federation.server_name import ip_literal, parse_server_name

logger = logging.getLogger(__name__)

DEFAULT_PORT = 8448
WELL_KNOWN_DEFAULT_CACHE_S = 24 * 3600
WELL_KNOWN_MIN_CACHE_S = 5 * 60
WELL_KNOWN_MAX_CACHE_S = 48 * 3600
WELL_KNOWN_ERROR_CACHE_S = 3600
WELL_KNOWN_MAX_SIZE = 50 * 1024
WELL_KNOWN_MAX_REDIRECTS = 5
SRV_LIFETIME_S = 10.0
_MAX_CACHED_NAMES = 10_000


class DiscoveryError(Exception):
    """The server name cannot be turned into an address to connect to."""


@dataclass(frozen=True)
class Endpoint:
    """Where to connect, and what to say there. `host` is what to resolve (or an IP, without
    brackets); `tls_name` the name the certificate must hold (sent as SNI unless an IP);
    `host_header` the HTTP Host header."""
    host: str
    port: int
    tls_name: str
    host_header: str


class ServerDiscovery:
    """`https_get(url) -> (status, headers with lower-case names, body bytes)` fetches one URL
    without following redirects (the HTTP client's, so the well-known request is address-filtered
    and verified like any other); `resolver` is a dnspython Resolver (None: the system's)."""

    def __init__(self, https_get, resolver=None, *, well_known_port: int = 443, clock=time.monotonic):
        self.https_get = https_get
        self.well_known_port = well_known_port
        self.clock = clock
        self._resolver = resolver
        self._resolver_lock = threading.Lock()
        self._well_known = {}  # hostname -> (expires_at, m.server or None)

    def resolve(self, server_name: str) -> list[Endpoint]:
        """The endpoints to try, in order. Raises DiscoveryError."""
        try:
            host, port = parse_server_name(server_name)
        except ValueError as e:
            raise DiscoveryError(str(e)) from None
        if ip_literal(host) is not None or port is not None:
            return [_direct(host, port, server_name)]
        delegated = self.well_known(host)
        if delegated is not None:
            d_host, d_port = parse_server_name(delegated)
            if ip_literal(d_host) is not None or d_port is not None:
                return [_direct(d_host, d_port, delegated)]
            host = d_host
        return self._srv_endpoints(host) or [Endpoint(host, DEFAULT_PORT, host, host)]

    def _srv_endpoints(self, host: str) -> list[Endpoint]:
        for service in ("_matrix-fed._tcp", "_matrix._tcp"):
            records = self._srv(f"{service}.{host}")
            if records:
                return [Endpoint(target, port, host, host) for target, port in records]
        return []

    def _srv(self, name: str) -> list[tuple[str, int]]:
        """SRV targets in the order to try them (RFC 2782: by priority, weighted at random among
        equals); [] when there are none or DNS fails, so the default port is tried."""
        resolver = self._get_resolver()
        if resolver is None:
            return []
        try:
            answer = resolver.resolve(name, "SRV", lifetime=SRV_LIFETIME_S)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.exception.DNSException as e:
            logger.info("SRV look-up of %s failed (%s): trying the default port", name, e)
            return []
        records = list(answer)
        if len(records) == 1 and records[0].target.to_text() == ".":
            raise DiscoveryError(f"{name}: SRV says the service is not available")
        ordered = []
        for priority in sorted({r.priority for r in records}):
            group = [r for r in records if r.priority == priority]
            while group:
                weights = [r.weight + 1 for r in group]  # +1: zero weights still get a chance
                pick = random.choices(range(len(group)), weights)[0]
                ordered.append(group.pop(pick))
        return [(r.target.to_text(omit_final_dot=True), r.port) for r in ordered]

    def _get_resolver(self):
        with self._resolver_lock:
            if self._resolver is None:
                try:
                    self._resolver = dns.resolver.Resolver()
                except dns.exception.DNSException as e:  # e.g. no /etc/resolv.conf
                    logger.warning("no DNS resolver configuration (%s): SRV records are not looked up", e)
                    return None
                self._resolver.cache = dns.resolver.LRUCache()
            return self._resolver

    def well_known(self, hostname: str) -> str | None:
        """The `m.server` that `hostname`'s .well-known/matrix/server delegates to, or None."""
        now = self.clock()
        cached = self._well_known.get(hostname)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            delegated, cache_s = self._fetch_well_known(hostname)
        except DiscoveryError as e:
            logger.info("no usable .well-known/matrix/server for %s: %s", hostname, e)
            delegated, cache_s = None, WELL_KNOWN_ERROR_CACHE_S
        if len(self._well_known) >= _MAX_CACHED_NAMES:
            self._well_known.clear()
        self._well_known[hostname] = (now + cache_s, delegated)
        return delegated

    def _fetch_well_known(self, hostname: str) -> tuple[str, float]:
        port = "" if self.well_known_port == 443 else f":{self.well_known_port}"
        url = f"https://{hostname}{port}/.well-known/matrix/server"
        # The spec: follow redirects, but not in circles.
        for _ in range(WELL_KNOWN_MAX_REDIRECTS + 1):
            try:
                status, headers, body = self.https_get(url)
            except Exception as e:  # anything the transport raises is a failed look-up
                raise DiscoveryError(f"GET {url} failed: {e}") from None
            if status in (301, 302, 303, 307, 308) and headers.get("location"):
                url = urljoin(url, headers["location"])
                if urlsplit(url).scheme != "https":
                    raise DiscoveryError(f"redirected to a URL that is not https: {url}")
                continue
            break
        else:
            raise DiscoveryError("too many redirects")
        if status != 200:
            raise DiscoveryError(f"GET {url} answered {status}")
        try:
            body = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise DiscoveryError("not JSON") from None
        delegated = body.get("m.server") if isinstance(body, dict) else None
        if not isinstance(delegated, str):
            raise DiscoveryError("no m.server string")
        try:
            parse_server_name(delegated)
        except ValueError:
            raise DiscoveryError(f"m.server is not a server name: {delegated!r}") from None
        return delegated, cache_period(headers)


def cache_period(headers: dict) -> float:
    """How long to keep a well-known answer, from its Cache-Control or Expires header."""
    period = None
    cache_control = {}
    for directive in headers.get("cache-control", "").split(","):
        name, _, value = directive.strip().partition("=")
        cache_control[name.strip().lower()] = value.strip().strip('"')
    if "no-store" in cache_control:
        period = 0
    elif re.fullmatch(r"\d+", cache_control.get("max-age", "")):
        period = int(cache_control["max-age"])
    elif headers.get("expires"):
        try:
            period = email.utils.parsedate_to_datetime(headers["expires"]).timestamp() - time.time()
        except (TypeError, ValueError):
            period = 0  # an invalid Expires means already expired (RFC 9111)
    if period is None:
        return WELL_KNOWN_DEFAULT_CACHE_S
    return min(max(period, WELL_KNOWN_MIN_CACHE_S), WELL_KNOWN_MAX_CACHE_S)


def _direct(host: str, port: int | None, host_header: str) -> Endpoint:
    address = ip_literal(host)
    return Endpoint(address or host, port or DEFAULT_PORT, address or host, host_header)
