"""The master process: every endpoint, all writes. `gunicorn -k gevent apps.master:app`.

HS_CONFIG names the homeserver.yaml (default: ./homeserver.yaml).
"""

import os

from hs import metrics
from hs.api import admin, admin_media, admin_pushers, admin_tokens, email_links, media, server_key, wellknown
from hs.api.app import build_app
from hs.api.client import (
    account,
    account_data,
    appservice,
    capabilities,
    cross_signing,
    dehydrated_device,
    devices,
    directory,
    filter,
    keys,
    keys_changes,
    legacy_sync,
    login,
    membership,
    notifications,
    presence,
    profile,
    push_rules,
    pushers,
    receipts,
    register,
    relations,
    reports,
    room_keys,
    room_summary,
    room_upgrade,
    rooms,
    search,
    sync,
    thirdparty,
    threepids,
    timestamp,
    to_device,
    typing,
    user_directory,
    versions,
)
from hs.api.federation import directory as federation_directory
from hs.api.federation import keys as federation_keys
from hs.api.federation import media as federation_media
from hs.api.federation import membership as federation_membership
from hs.api.federation import rooms as federation_rooms
from hs.api.federation import send as federation_send
from hs.api.federation import user_keys as federation_user_keys
from hs.api.federation import version as federation_version
from hs.appservice.scheduler import AppServiceScheduler
from hs.config import load_config
from hs.federation.tls_listener import start_tls_listeners
from hs.logging_setup import setup_logging
from hs.master_replication import start_replication
from hs.server import HomeServer, load_or_create_signing_keys, open_database

RESOURCE_MODULES = (versions, wellknown, capabilities, login, register, account, devices, profile, admin,
                    admin_tokens, server_key, rooms, membership, filter)
RESOURCE_MODULES += (directory, room_summary)
RESOURCE_MODULES += (search, timestamp, user_directory, reports, room_upgrade)
RESOURCE_MODULES += (relations,)
RESOURCE_MODULES += (sync,)
RESOURCE_MODULES += (account_data,)
RESOURCE_MODULES += (typing, receipts)
RESOURCE_MODULES += (presence,)
RESOURCE_MODULES += (pushers,)
RESOURCE_MODULES += (to_device, legacy_sync)
RESOURCE_MODULES += (push_rules,)
RESOURCE_MODULES += (notifications,)
RESOURCE_MODULES += (keys,)
RESOURCE_MODULES += (room_keys,)
RESOURCE_MODULES += (keys_changes,)
RESOURCE_MODULES += (cross_signing,)
RESOURCE_MODULES += (dehydrated_device,)
RESOURCE_MODULES += (threepids, email_links)
RESOURCE_MODULES += (appservice, thirdparty)
RESOURCE_MODULES += (admin_pushers,)
RESOURCE_MODULES += (federation_version, federation_keys, federation_send, federation_membership,
                     federation_rooms)
RESOURCE_MODULES += (federation_user_keys,)
RESOURCE_MODULES += (federation_directory,)
# The media repository, unless a media_repository worker serves it instead.
MEDIA_RESOURCE_MODULES = (media, admin_media, federation_media)


def create_app(config_path: str):
    config = load_config(config_path)
    setup_logging(config)
    db = open_database(config, migrate=True)
    hs = HomeServer(config, db, load_or_create_signing_keys(config))
    app = build_app(hs.auth, config)
    for module in RESOURCE_MODULES:
        module.register(app, hs)
    if config.enable_media_repo:
        for module in MEDIA_RESOURCE_MODULES:
            module.register(app, hs)
        hs.media_admin.start_retention()
    start_replication(hs, app)
    if config.notify_appservices:  # else the appservice worker sends the transactions
        AppServiceScheduler(hs).start()
    if config.start_pushers:  # else the pusher worker delivers notifications
        hs.pusher_pool.start()
        hs.status_details["pushers"] = hs.pusher_pool.status
    hs.federation_events.start_pruning()
    if hs.federation_sender is not None:
        hs.federation_sender.start()
        hs.status_details["federation"] = hs.federation_sender.status_summary
        metrics.register_federation_sender(hs.federation_sender)
    start_tls_listeners(config, app)  # last: the federation port answers once every route is in
    return app


app = create_app(os.environ.get("HS_CONFIG", "homeserver.yaml"))
