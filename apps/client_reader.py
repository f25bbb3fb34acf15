"""The client_reader: the read-only client endpoints of hs/worker_routes.py (room state, members,
messages, context, events, relations, profiles, the public room list, login flows) and filters,
whose uploads it hands to the master."""

from hs.api.client import directory, filter, login, profile, relations, rooms, versions
from hs.worker import create_worker_app

app = create_worker_app("client_reader", (versions, login, rooms, profile, directory, relations, filter))
