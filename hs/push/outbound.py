"""Outbound HTTP to push gateways: a pusher's URL is chosen by a user, so it must not become a
way to reach internal services.

Each new connection resolves the host itself, drops every address in `ip_range_blacklist`
unless it is in `ip_range_whitelist` (Synapse's keys and default list), and connects to one of
the addresses it checked: nothing resolves the name again between the check and the connect,
so a DNS answer that changes (rebinding) cannot slip past. TLS still verifies the certificate
against the URL's host name. Redirects are not followed (a gateway has no reason to redirect,
and the target would be a second address to check), proxies from the environment are ignored
(they would connect for us), and requests time out. Sockets come from the `socket` module,
which gunicorn's gevent worker has patched, so a slow gateway parks only its pusher's greenlet.
"""

import ipaddress
import json
import socket

import requests
from requests.adapters import HTTPAdapter
from urllib3 import HTTPConnectionPool, HTTPSConnectionPool, PoolManager
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import NewConnectionError

# Synapse's DEFAULT_IP_RANGE_BLOCKLIST, plus the unspecified addresses it always adds.
DEFAULT_IP_RANGE_BLACKLIST = [
    "127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "192.0.0.0/24",
    "169.254.0.0/16", "192.88.99.0/24", "198.18.0.0/15", "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24",
    "224.0.0.0/4", "::1/128", "fe80::/10", "fc00::/7", "2001:db8::/32", "ff00::/8", "fec0::/10",
    "0.0.0.0/32", "::/128",
]
CONNECT_TIMEOUT_S = 10
READ_TIMEOUT_S = 30


class OutboundError(Exception):
    """The request did not succeed: refused address, network error, timeout, non-2xx answer
    (`status` set) or a body that is not a JSON object."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class IpFilter:
    def __init__(self, blacklist, whitelist):
        self.blacklist = [ipaddress.ip_network(n, strict=False) for n in blacklist]
        self.whitelist = [ipaddress.ip_network(n, strict=False) for n in whitelist]

    def allows(self, address: str) -> bool:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 scope id
        if ip.version == 6 and ip.ipv4_mapped is not None:
            # ::ffff:127.0.0.1 reaches 127.0.0.1.
            ip = ip.ipv4_mapped
        if any(ip in net for net in self.whitelist):
            return True
        return not any(ip in net for net in self.blacklist)

    def connect(self, host: str, port: int, timeout, source_address=None, socket_options=None) -> socket.socket:
        """A socket connected to an allowed address of `host`; OSError when there is none."""
        infos = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
        allowed = [info for info in infos if self.allows(info[4][0])]
        if not allowed:
            raise OSError(f"{host} resolves only to addresses refused by ip_range_blacklist")
        error = None
        for family, kind, proto, _name, sockaddr in allowed:
            sock = socket.socket(family, kind, proto)
            try:
                for option in socket_options or ():
                    sock.setsockopt(*option)
                if timeout is not None:
                    sock.settimeout(timeout)
                if source_address:
                    sock.bind(source_address)
                sock.connect(sockaddr)
                return sock
            except OSError as e:
                error = e
                sock.close()
        raise error


class _FilteredConnection:
    ip_filter: IpFilter

    def _new_conn(self) -> socket.socket:
        try:
            return self.ip_filter.connect(self._dns_host, self.port, self.timeout, self.source_address,
                                          self.socket_options)
        except OSError as e:
            raise NewConnectionError(self, f"Failed to establish a new connection: {e}") from e


class _FilteredAdapter(HTTPAdapter):
    def __init__(self, ip_filter: IpFilter):
        http = type("FilteredHTTPConnection", (_FilteredConnection, HTTPConnection), {"ip_filter": ip_filter})
        https = type("FilteredHTTPSConnection", (_FilteredConnection, HTTPSConnection), {"ip_filter": ip_filter})
        self._pool_classes = {"http": type("FilteredHTTPPool", (HTTPConnectionPool,), {"ConnectionCls": http}),
                              "https": type("FilteredHTTPSPool", (HTTPSConnectionPool,), {"ConnectionCls": https})}
        super().__init__(max_retries=0)

    def init_poolmanager(self, connections, maxsize, block=False, **pool_kwargs):
        self.poolmanager = PoolManager(num_pools=connections, maxsize=maxsize, block=block, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = self._pool_classes

    def proxy_manager_for(self, proxy, **proxy_kwargs):
        raise requests.exceptions.InvalidURL("proxies are not used for outbound push requests")


class OutboundHttp:
    def __init__(self, blacklist, whitelist, user_agent: str = "hs-push"):
        self.session = requests.Session()
        self.session.trust_env = False  # no proxies or .netrc from the environment
        self.session.headers["User-Agent"] = user_agent
        adapter = _FilteredAdapter(IpFilter(blacklist, whitelist))
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def post_json(self, url: str, body: dict, timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S)) -> dict:
        """POST `body` as JSON and return the JSON object answered (2xx only)."""
        try:
            resp = self.session.post(url, data=json.dumps(body, ensure_ascii=False).encode("utf-8"),
                                     headers={"Content-Type": "application/json"}, timeout=timeout,
                                     allow_redirects=False)
        except requests.RequestException as e:
            raise OutboundError(f"POST {url} failed: {e}") from None
        with resp:
            if not 200 <= resp.status_code < 300:
                raise OutboundError(f"POST {url} answered {resp.status_code}", resp.status_code)
            try:
                answer = resp.json()
            except ValueError:
                raise OutboundError(f"POST {url} answered a body that is not JSON", resp.status_code) from None
        if not isinstance(answer, dict):
            raise OutboundError(f"POST {url} answered JSON that is not an object", resp.status_code)
        return answer
