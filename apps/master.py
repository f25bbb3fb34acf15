"""The master process: every endpoint, all writes. `gunicorn -k gevent apps.master:app`.

HS_CONFIG names the homeserver.yaml (default: ./homeserver.yaml).
"""

import os

from hs.api import admin, admin_tokens, server_key, wellknown
from hs.api.app import build_app
from hs.api.client import (account, capabilities, devices, filter, login, membership, profile, register,
                           rooms, versions)
from hs.api.client import directory, room_summary
from hs.api.client import reports, room_upgrade, search, timestamp, user_directory
from hs.api.client import relations
from hs.api.client import sync
from hs.api.client import account_data
from hs.api.client import receipts, typing
from hs.config import load_config
from hs.logging_setup import setup_logging
from hs.server import HomeServer, load_or_create_signing_keys, open_database

RESOURCE_MODULES = (versions, wellknown, capabilities, login, register, account, devices, profile, admin,
                    admin_tokens, server_key, rooms, membership, filter)
RESOURCE_MODULES += (directory, room_summary)
RESOURCE_MODULES += (search, timestamp, user_directory, reports, room_upgrade)
RESOURCE_MODULES += (relations,)
RESOURCE_MODULES += (sync,)
RESOURCE_MODULES += (account_data,)
RESOURCE_MODULES += (typing, receipts)


def create_app(config_path: str):
    config = load_config(config_path)
    setup_logging(config)
    db = open_database(config, migrate=True)
    hs = HomeServer(config, db, load_or_create_signing_keys(config))
    app = build_app(hs.auth, config)
    for module in RESOURCE_MODULES:
        module.register(app, hs)
    return app


app = create_app(os.environ.get("HS_CONFIG", "homeserver.yaml"))
