"""The federation_reader: inbound federation requests (its routes are in hs/worker_routes.py).
Reads (events, state, backfill, keys, queries) are served here; what a request writes (a
transaction's events and EDUs, send_join and the other memberships, invites) the master writes
through the internal API (hs/worker.py forward_federation_writes)."""

from hs.api.client import versions
from hs.api.federation import directory as federation_directory
from hs.api.federation import keys as federation_keys
from hs.api.federation import membership as federation_membership
from hs.api.federation import rooms as federation_rooms
from hs.api.federation import send as federation_send
from hs.api.federation import user_keys as federation_user_keys
from hs.api.federation import version as federation_version
from hs.worker import create_worker_app

app = create_worker_app("federation_reader", (versions, federation_version, federation_keys, federation_send,
                                              federation_membership, federation_rooms, federation_user_keys,
                                              federation_directory))
