"""GET /_hs/status: what this process is and the stream positions it has reached, for
`synctl status` (a worker's replication lag is the master's position minus its own).

Answered on every listener, but only to peers on loopback (the TCP peer, never X-Forwarded-For):
it is for the admin's tools on the same machine, not for clients through a proxy.
"""

import ipaddress

from hs.api.app import Resource
from hs.errors import Codes, MatrixError


class StatusResource(Resource):
    public = frozenset({"GET"})

    def __init__(self, app_name: str, worker_name: str, positions, following, details):
        self.app_name = app_name
        self.worker_name = worker_name
        self.positions = positions  # () -> {stream name: position}
        self.following = following  # () -> whether the positions are the master's (a worker's are once it follows)
        self.details = details  # {name: () -> dict}: what a duty reports (the pushers it runs, ...)

    def on_get(self, req, resp):
        try:
            loopback = ipaddress.ip_address(req.remote_addr).is_loopback
        except ValueError:
            loopback = False
        if not loopback or req.get_header("X-Forwarded-For"):
            raise MatrixError(403, Codes.FORBIDDEN, "Only served to local tools")
        resp.media = {"app": self.app_name, "name": self.worker_name, "following": self.following(),
                      "streams": self.positions(), "details": {name: get() for name, get in self.details.items()}}


def register(app, app_name: str, worker_name: str, positions, following=lambda: True, details=None) -> None:
    """``details``: a dict the process's duties may add to after this call ({name: () -> dict})."""
    app.add_route("/_hs/status", StatusResource(app_name, worker_name, positions, following,
                                                details if details is not None else {}))
