"""Which public paths each worker type serves: the one table both HAProxy and the worker apps read.

``ROUTES[worker_type]`` is a list of ``(methods, regex)``: ``methods`` is a tuple of HTTP methods, or
None for every method; ``regex`` matches the request path as sent (still percent-encoded, no query
string). `synctl haproxy-config` turns each entry into a routing rule; a worker app serves exactly
these paths, so what HAProxy sends a worker is what it answers. Every path not listed goes to the
master. The regexes use only syntax Python's re and HAProxy's PCRE agree on.

pusher and appservice serve no public paths (only their own listener's /versions and status).
"""

import re

_CLIENT = "^/_matrix/client/(r0|v3)"
_ROOM = _CLIENT + "/rooms/[^/]+"

ROUTES: dict[str, list[tuple[tuple[str, ...] | None, str]]] = {
    # Long-polls, balanced per access token so a device keeps hitting the instance holding its state.
    "synchrotron": [
        (None, _CLIENT + "/sync$"),
        (None, _CLIENT + "/events$"),
        (None, _CLIENT + "/initialSync$"),
        (None, _ROOM + "/initialSync$"),
    ],
    # Reads only: the same paths with PUT or POST are writes and stay on the master.
    "client_reader": [
        (("GET",), _CLIENT + "/publicRooms$"),
        (("GET",), _ROOM + "/state(/.*)?$"),
        (("GET",), _ROOM + "/members$"),
        (("GET",), _ROOM + "/joined_members$"),
        (("GET",), _ROOM + "/context/[^/]+$"),
        (("GET",), _ROOM + "/messages$"),
        (("GET",), _ROOM + "/event/[^/]+$"),
        (("GET",), "^/_matrix/client/v1/rooms/[^/]+/relations/[^/]+(/[^/]+){0,2}$"),
        (("GET",), _CLIENT + "/profile/[^/]+(/[^/]+)?$"),
        (("GET",), "^/_matrix/client/versions$"),
        (("GET",), _CLIENT + "/login$"),
        # A filter upload is a write the client_reader hands to the master (replication/http.py).
        (("GET", "POST"), _CLIENT + "/user/[^/]+/filter(/[^/]+)?$"),
    ],
    "federation_reader": [
        # Everything but the media, which goes where the media repository is.
        (None, "^/_matrix/federation/(?!v1/media/)"),
        (None, "^/_matrix/key/v2/query"),
    ],
    "media_repository": [
        (None, "^/_matrix/media/"),
        (None, "^/_matrix/client/v1/media/"),
        (None, "^/_matrix/federation/v1/media/"),
        # Synapse's media admin API goes where the media is.
        (None, "^/_synapse/admin/v1/media/"),
        (None, "^/_synapse/admin/v1/purge_media_cache$"),
        (None, "^/_synapse/admin/v1/user/[^/]+/media/quarantine$"),
        (None, "^/_synapse/admin/v(1|2)/users/[^/]+/media$"),
        (None, "^/_synapse/admin/v1/room/[^/]+/media(/quarantine)?$"),
        (None, "^/_synapse/admin/v1/quarantine_media/[^/]+$"),
    ],
    "pusher": [],
    "appservice": [],
}

_COMPILED = {kind: [(methods, re.compile(regex)) for methods, regex in routes] for kind, routes in ROUTES.items()}


def serves(worker_type: str, method: str, path: str) -> bool:
    """Whether ``worker_type`` serves ``method path`` (the path as sent, without its query string)."""
    return any((methods is None or method in methods) and regex.search(path)
               for methods, regex in _COMPILED[worker_type])
