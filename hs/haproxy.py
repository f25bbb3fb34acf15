"""The HAProxy config `synctl haproxy-config` prints: path routing per worker type, the master behind the rest.

Routes come from hs/worker_routes.py, so HAProxy sends each worker exactly what it serves. With
`federation_bind`, a second frontend takes the federation port: HAProxy terminates TLS there (the
same certificate as the homeserver's, key included, in one PEM file), so it can route by path and
keep each origin's /send on one federation_reader; behind it everything is plain HTTP on loopback.
"""

from hs.handlers.sync import MAX_TIMEOUT_MS
from hs.worker_routes import ROUTES

# HAProxy must outlast the longest /sync long-poll, or it cuts parked requests and clients see 504s.
LONG_POLL_TIMEOUT_S = MAX_TIMEOUT_MS // 1000 + 5 * 60
MAX_CONNECTIONS = 20000
_CHECK_PATH = "/_matrix/client/versions"  # every process answers it, the master and every worker app
_FEDERATION_CHECK_PATH = "/_matrix/federation/v1/version"  # public, on every listener serving federation
# Transactions of one origin are applied one at a time and in order (hs/handlers/federation_events.py
# locks per origin in one process): all of an origin's /send go to one federation_reader.
_FEDERATION_SEND = "^/_matrix/federation/v1/send/"
# The origin of the X-Matrix Authorization header (origin="name" or origin=name, any position).
# req.fhdr: req.hdr would split the header at its commas. The regex has no '"' or ',' (\x22,
# \x2c) and the word is single-quoted, as HAProxy's config and sample parsers both need.
_ORIGIN = r"""'%[req.fhdr(Authorization),regsub("^.*[^A-Za-z0-9+/_-]origin=\\x22?([^\\x22\\x2c]+).*$","\\1")]'"""


def proxied_listener(listeners):
    """The listener HAProxy sends a process's requests to: its first http listener serving `client`
    (health checks ask for /_matrix/client/versions), else one serving more than metrics and the
    internal replication API."""
    http = [lst for lst in listeners if lst.type == "http"]
    return next((lst for lst in http if "client" in lst.resources),
                next((lst for lst in http if lst.resources - {"metrics", "replication"}), http[0]))


def _address(listeners, lst=None) -> str:
    """Where HAProxy reaches a process (on `lst`, by default its proxied listener), over
    loopback when it listens on every address."""
    lst = lst or proxied_listener(listeners)
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(lst.bind_addresses[0], lst.bind_addresses[0])
    return f"[{host}]:{lst.port}" if ":" in host else f"{host}:{lst.port}"


def _bind(bind: str, option: str = "--bind") -> str:
    host, _, port = bind.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{option}: expected ADDR:PORT such as 127.0.0.1:8080, got {bind!r}")
    return bind


def _master_federation_listener(main_config):
    """The master's plain http listener serving federation: HAProxy has terminated TLS."""
    for lst in main_config.listeners:
        if lst.type == "http" and not lst.tls and "federation" in lst.resources:
            return lst
    raise ValueError("--federation-bind: the master needs an http listener without tls serving the "
                     "federation resource, for HAProxy to send it what no federation_reader serves")


def _federation_frontend(main_config, bind: str, pem: str | None, routed: bool, media: bool) -> list[str]:
    if not pem:
        raise ValueError("--federation-bind needs --federation-pem: the certificate and its key in one PEM file")
    out = ["", "# Other servers: TLS ends here, so requests can be routed by path and origin.",
           "frontend federation", f"    bind {_bind(bind, '--federation-bind')} ssl crt {pem}"]
    if media:  # our media for other servers, where the media repository is
        out += [f"    use_backend media_repository if {{ path_reg {regex} }}" for _, regex in ROUTES["media_repository"]
                if regex.startswith("^/_matrix/federation/")]
    if routed:
        out.append(f"    use_backend federation_send if {{ path_reg {_FEDERATION_SEND} }}")
        out += [f"    use_backend federation_reader if {{ path_reg {regex} }}" for _, regex in ROUTES["federation_reader"]]
    out += ["    default_backend master_federation", "", "backend master_federation",
            f"    option httpchk GET {_FEDERATION_CHECK_PATH}",
            f"    server master {_address(main_config.listeners, _master_federation_listener(main_config))} check"]
    return out


def haproxy_config(main_config, workers, bind: str = "127.0.0.1:8080", source: str = "",
                   federation_bind: str | None = None, federation_pem: str | None = None) -> str:
    """The config text for the master ``main_config`` and the WorkerConfigs ``workers``; with
    ``federation_bind``, a TLS frontend for other servers there, with ``federation_pem``."""
    # In the route table's order, so the output does not depend on how the worker files are named.
    by_type = {kind: [w for w in workers if w.worker_app == kind] for kind, routes in ROUTES.items() if routes}
    by_type = {kind: group for kind, group in by_type.items() if group}
    timeout = f"{LONG_POLL_TIMEOUT_S // 60}m"
    out = [
        f"# Generated by `synctl haproxy-config`{' from ' + source if source else ''}; generate it again",
        "# after adding or removing a worker. Every worker's http listener needs `x_forwarded: true`",
        "# to take the client's address from the X-Forwarded-For header set here.",
        "global",
        "    log stderr format raw local0 notice",
        "",
        "defaults",
        "    mode http",
        "    # Every parked /sync holds a connection, and older HAProxy versions cap a frontend at 2,000.",
        "    # (The process-wide limit follows HAProxy's open-files limit: raise that for more clients.)",
        f"    maxconn {MAX_CONNECTIONS}",
        "    log global",
        "    option httplog",
        "    option forwardfor",
        "    timeout connect 5s",
        "    timeout http-request 30s",
        "    timeout http-keep-alive 75s",
        f"    # Above the longest /sync long-poll ({MAX_TIMEOUT_MS // 60000} min): a parked request is idle",
        "    # on both sides until it is woken.",
        f"    timeout client {timeout}",
        f"    timeout server {timeout}",
        f"    option httpchk GET {_CHECK_PATH}",
        "    http-check expect status 200",
        "",
        "frontend matrix",
        f"    bind {_bind(bind)}",
    ]
    # Synchrotrons with `worker_initial_sync_pool: true` take the syncs without `since`, while
    # the others remain for the long-polls; with only pool members, they take every sync.
    initial = [w for w in by_type.get("synchrotron", []) if w.worker_initial_sync_pool]
    if initial and len(initial) < len(by_type["synchrotron"]):
        by_type["synchrotron"] = [w for w in by_type["synchrotron"] if not w.worker_initial_sync_pool]
        out += [f"    use_backend synchrotron_initial if {{ path_reg {regex} }} !{{ url_param(since) -m found }}"
                for methods, regex in ROUTES["synchrotron"] if regex.endswith("/sync$")]
    else:
        initial = []
    for kind in by_type:
        if kind == "federation_reader":
            out.append(f"    use_backend federation_send if {{ path_reg {_FEDERATION_SEND} }}")
        for methods, regex in ROUTES[kind]:
            method_acl = f"{{ method {' '.join(methods)} }} " if methods else ""
            out.append(f"    use_backend {kind} if {method_acl}{{ path_reg {regex} }}")
    out.append("    default_backend master")
    if federation_bind is not None:
        out += _federation_frontend(main_config, federation_bind, federation_pem, "federation_reader" in by_type,
                                    "media_repository" in by_type)
    out += ["", "backend master", f"    server master {_address(main_config.listeners)} check"]
    if initial:
        by_type["synchrotron_initial"] = initial
    for kind, group in by_type.items():
        out += ["", f"backend {kind}"]
        if kind.startswith("synchrotron"):
            out += [
                "    # One device's /sync keeps reaching the same instance: hash the access token, from the",
                "    # Authorization header or, for clients that send it so, the access_token query parameter.",
                "    http-request set-header X-Matrix-Sync-Key %[req.hdr(Authorization)] "
                "if { req.hdr(Authorization) -m found }",
                "    http-request set-header X-Matrix-Sync-Key %[url_param(access_token)] "
                "unless { req.hdr(Authorization) -m found }",
                "    balance hdr(X-Matrix-Sync-Key)",
                "    hash-type consistent",
            ]
        else:
            out.append("    balance roundrobin")
        servers = [f"    server {w.worker_name} {_address(w.worker_listeners)} check" for w in group]
        out += servers
        if kind == "federation_reader":
            out += ["", "backend federation_send",
                    "    # One origin's transactions reach one instance: hash the X-Matrix origin.",
                    f"    http-request set-header X-Matrix-Origin {_ORIGIN}",
                    "    balance hdr(X-Matrix-Origin)", "    hash-type consistent", *servers]
    return "\n".join(out) + "\n"
