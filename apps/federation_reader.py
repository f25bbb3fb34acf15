"""The federation_reader: inbound federation requests. Its routes are in hs/worker_routes.py; the
federation API itself arrives with the federation issue, so today it answers only /versions and
its status, and every federation path with 404 M_UNRECOGNIZED, as the master does."""

from hs.api.client import versions
from hs.api.federation import keys as federation_keys
from hs.api.federation import version as federation_version
from hs.worker import create_worker_app

app = create_worker_app("federation_reader", (versions, federation_version, federation_keys))
