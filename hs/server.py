"""The homeserver's composition root: config, database, stores and handlers for one process.

Every app builds one of these and picks which resources to serve from it. Stores and
handlers are plain attributes built once, in dependency order; nothing is created lazily.
"""

import logging
import os
import sys

from hs import metrics
from hs.config import ConfigError
from hs.events.signing import (
    generate_signing_key,
    read_signing_keys,
    write_signing_keys,
)
from hs.handlers.account import AccountHandler
from hs.handlers.account_data import AccountDataHandler
from hs.handlers.admin_register import AdminRegistrationHandler
from hs.handlers.admin_tokens import RegistrationTokenAdminHandler
from hs.handlers.auth import AuthHandler, PasswordHasher
from hs.handlers.devices import DeviceHandler
from hs.handlers.directory import DirectoryHandler
from hs.handlers.event_creation import EventCreationHandler
from hs.handlers.filters import FilterHandler
from hs.handlers.membership import MembershipHandler
from hs.handlers.profile import ProfileHandler
from hs.handlers.redaction import RedactionHandler
from hs.handlers.registration import RegistrationHandler
from hs.handlers.relations import RelationHandler
from hs.handlers.reports import ReportHandler
from hs.handlers.room_creation import RoomCreationHandler
from hs.handlers.room_reads import RoomReadHandler
from hs.handlers.room_summary import RoomSummaryHandler
from hs.handlers.room_upgrade import RoomUpgradeHandler
from hs.handlers.search import SearchHandler
from hs.handlers.sessions import SessionHandler
from hs.handlers.sync import SyncHandler, event_persisted_listener
from hs.handlers.sync_rooms import MembershipChanges, RoomSync
from hs.handlers.uia import UiaHandler
from hs.handlers.user_directory import UserDirectoryHandler
from hs.notifier import Notifier, StreamWriteNotifier
from hs.ratelimit import RateLimiter
from hs.storage.account_data import AccountDataStore
from hs.storage.accounts import AccountStore
from hs.storage.database import Database
from hs.storage.devices import DeviceStore
from hs.storage.directory import DirectoryStore
from hs.storage.embedded import start_embedded_postgres
from hs.storage.events import EventStore
from hs.storage.filters import FilterStore
from hs.storage.id_generator import StreamIdGenerator
from hs.storage.migrations import apply_migrations
from hs.storage.registration_tokens import RegistrationTokenStore
from hs.storage.relations import RelationStore
from hs.storage.rooms import RoomStore
from hs.storage.search import SearchStore
from hs.storage.state import StateStore
from hs.storage.sync import SyncStore
from hs.storage.tokens import TokenStore
from hs.storage.uia import UiaStore
from hs.streams import ReplicatedPosition, Streams

logger = logging.getLogger(__name__)


class Limiters:
    def __init__(self, config):
        self.registration = RateLimiter(config.rc_registration)
        self.login_address = RateLimiter(config.rc_login_address)
        self.login_account = RateLimiter(config.rc_login_account)
        self.login_failed = RateLimiter(config.rc_login_failed_attempts)
        self.message = RateLimiter(config.rc_message)


def load_or_create_signing_keys(config) -> list:
    if not os.path.exists(config.signing_key_path):
        logger.info("No signing key at %s: generating one", config.signing_key_path)
        write_signing_keys(config.signing_key_path, [generate_signing_key()])
    try:
        keys = read_signing_keys(config.signing_key_path)
    except (OSError, ValueError) as e:
        raise ConfigError(f"signing_key_path: {e}") from None
    if not keys:
        raise ConfigError(f"signing_key_path: {config.signing_key_path} holds no key")
    return keys


def open_database(config, *, migrate: bool) -> Database:
    """The master migrates; with no `database` section it first starts the embedded server."""
    dsn = config.database_dsn or start_embedded_postgres(config.data_dir)
    db = Database(dsn, max_connections=config.database_max_connections)
    if migrate:
        apply_migrations(db)
    return db


class HomeServer:
    """`worker=True` builds a worker's: stream positions come from replication (a
    ReplicatedPosition each, advanced by replication/client.py) instead of the writer's id
    generators, and nothing that only the master runs (presence timeouts) starts."""

    def __init__(self, config, db: Database, signing_keys: list, *, worker: bool = False):
        self.config = config
        self.db = db
        self.is_worker = worker
        self.signing_keys = signing_keys
        self.limiters = Limiters(config)
        # What this process's duties report in GET /_hs/status (synctl status): {name: () -> dict}.
        self.status_details = {}

        self.accounts = AccountStore(db)
        self.devices = DeviceStore(db)
        self.tokens = TokenStore(db)
        self.uia_sessions = UiaStore(db)
        self.registration_tokens = RegistrationTokenStore(db)

        self.hasher = PasswordHasher(pepper=config.password_pepper)
        # Application services (app_service_config_files): as_token requests, their users' registration.
        from hs.handlers.appservice_auth import AppServiceAuth
        self.app_service_auth = AppServiceAuth(config.server_name, config.app_services, db, self.accounts,
                                               self.devices)
        if not worker:
            self.app_service_auth.ensure_senders_exist()
        self.auth = AuthHandler(self.tokens, self.devices, self.app_service_auth)
        self.uia = UiaHandler(config.server_name, self.uia_sessions, self.accounts, self.hasher,
                              self.registration_tokens, self.limiters.login_failed,
                              config.ui_auth_session_lifetime_ms)
        self.sessions = SessionHandler(config, db, self.accounts, self.tokens, self.hasher, self.limiters)
        self.registration = RegistrationHandler(config, db, self.accounts, self.hasher, self.sessions, self.uia,
                                                self.limiters, self.app_service_auth)
        self.device_handler = DeviceHandler(self.devices, self.uia)
        self.admin_registration = AdminRegistrationHandler(config, db, self.hasher, self.registration,
                                                           self.sessions)
        self.registration_token_admin = RegistrationTokenAdminHandler(self.accounts, self.registration_tokens)

        self.rooms = RoomStore(db)
        self.state = StateStore(db)
        self.events = EventStore(db, self.state)
        # Only the master writes events; it is the single allocator of their stream ids.
        self.event_stream = self._position("events", "events", "stream_ordering")
        self.event_creation = EventCreationHandler(config, db, self.rooms, self.events, self.state,
                                                   self.event_stream, signing_keys[0])
        self.membership = MembershipHandler(config, self.rooms, self.events, self.state, self.event_creation,
                                            self.accounts)
        self.room_creation = RoomCreationHandler(config, self.rooms, self.event_creation, self.membership,
                                                 self.accounts)
        self.room_reads = RoomReadHandler(self.rooms, self.events, self.state)
        self.redactions = RedactionHandler(self.rooms, self.events, self.state, self.event_creation)
        # Profile changes and deactivation send member events, so these come after the rooms.
        self.account = AccountHandler(config, db, self.accounts, self.hasher, self.uia, self.registration,
                                      self.rooms, self.membership)
        self.profile = ProfileHandler(config.server_name, self.accounts, self.rooms, self.events,
                                      self.event_creation)

        self.filters = FilterStore(db)
        self.filter_handler = FilterHandler(self.filters)

        self.directory_store = DirectoryStore(db)
        self.room_summaries = RoomSummaryHandler(self.rooms, self.events, self.directory_store)
        # Registers the m.room.canonical_alias content check with event creation.
        self.directory = DirectoryHandler(config, self.rooms, self.state, self.events, self.event_creation,
                                          self.accounts, self.directory_store, self.room_summaries)
        # Calls to application services (pings, queries, transactions) and which events each is
        # sent; the transaction scheduler runs in the one process that sends them (apps/master.py
        # with notify_appservices, else apps/appservice.py). Unknown aliases in a service's
        # namespace are asked about, for GET /directory/room and joins alike.
        from hs.appservice.api import AppServiceApi
        from hs.appservice.interest import AppServiceInterest
        self.appservice_api = AppServiceApi(config.server_name)
        self.appservice_interest = AppServiceInterest(self.rooms, self.state, self.events, self.event_stream)
        self.directory.app_services = config.app_services
        self.directory.appservice_api = self.appservice_api
        self.app_service_auth.api = self.appservice_api
        from hs.handlers.thirdparty import ThirdPartyHandler
        self.thirdparty = ThirdPartyHandler(config.app_services, self.appservice_api)
        self.membership.lookup_alias = self.directory.lookup_local_alias

        self.relation_store = RelationStore(db)
        self.relation_handler = RelationHandler(self.relation_store, self.events, self.room_reads)
        # Every read path that serializes events bundles their aggregations through this hook.
        self.room_reads.bundled_aggregations = self.relation_handler.bundled_aggregations
        self.relation_handler.register_content_checks(self.event_creation)

        self.search_store = SearchStore(db)
        self.search = SearchHandler(self.search_store, self.events, self.state, self.room_reads)
        self.user_directory = UserDirectoryHandler(self.search_store)
        self.reports = ReportHandler(self.search_store, self.rooms, self.events, self.room_reads)
        self.room_upgrades = RoomUpgradeHandler(config, self.rooms, self.events, self.state, self.event_creation,
                                                self.membership)

        self.notifier = Notifier()
        metrics.register_notifier(self.notifier)
        self.room_event_notifier = StreamWriteNotifier(self.notifier, self.event_stream)
        self.streams = Streams(self.event_stream)
        # A member event also wakes the user it is about: an invitee or a joiner on another
        # device is not yet among the room's waiters.
        self.event_creation.persisted_listeners.append(event_persisted_listener(self.room_event_notifier))
        self.sync_store = SyncStore(db)
        self.sync = SyncHandler(self.streams, self.notifier,
                                RoomSync(self.sync_store, self.events, self.state, self.room_reads))
        # The master persists every member event, a worker sees each in the events stream: /sync
        # may reuse a user's membership rows. A worker starts following at its first position.
        self.membership_changes = MembershipChanges(sys.maxsize if worker else self.event_stream.get_current_token())
        self.sync.room_sync.membership_changes = self.membership_changes
        self.event_creation.persisted_listeners.append(self.membership_changes.on_persisted)

        # Account data and tags: their own stream, carried in /sync's account_data sections.
        self.account_data_store = AccountDataStore(db)
        self.account_data_stream = self._position("account_data", "account_data", "stream_id")
        self.streams.add("account_data", self.account_data_stream)
        self.account_data = AccountDataHandler(self.account_data_store, self.account_data_stream,
                                               StreamWriteNotifier(self.notifier, self.account_data_stream))
        self.sync.account_data = self.account_data

        # Typing (in memory on the master) and receipts: /sync's ephemeral events.
        from hs.handlers.receipts import ReceiptHandler
        from hs.handlers.typing import TypingHandler, TypingPosition
        from hs.storage.receipts import ReceiptStore
        self.typing = TypingHandler(self.rooms, self.notifier,
                                    ReplicatedPosition("typing") if worker else TypingPosition())
        self.streams.add("typing", self.typing)
        self.receipt_store = ReceiptStore(db)
        self.receipt_stream = self._position("receipts", "receipts", "stream_id")
        self.streams.add("receipt", self.receipt_stream)
        self.receipts = ReceiptHandler(self.receipt_store, self.receipt_stream,
                                       StreamWriteNotifier(self.notifier, self.receipt_stream), self.rooms, self.events,
                                       self.room_reads, self.account_data)
        self.sync.typing = self.typing
        self.sync.receipts = self.receipts

        # Presence: read from PostgreSQL anywhere; the master alone keeps who is online (and
        # syncing) in memory and runs the timeouts.
        from hs.handlers.presence import PresenceReader, PresenceWriter
        from hs.storage.presence import PresenceStore
        self.presence_store = PresenceStore(db)
        self.presence_stream = self._position("presence", "presence", "stream_id")
        self.streams.add("presence", self.presence_stream)
        self.presence = PresenceReader(self.presence_store, config.presence_enabled)
        self.presence_writer = PresenceWriter(self.presence_store, self.presence_stream, self.rooms, self.notifier,
                                              enabled=config.presence_enabled,
                                              idle_timeout_ms=config.presence_idle_timeout_ms,
                                              sync_online_timeout_ms=config.presence_sync_online_timeout_ms,
                                              server_name=config.server_name,
                                              federation_timeout_ms=config.presence_federation_timeout_ms)
        if not worker:
            self.presence_writer.start()
        self.sync.presence = self.presence

        # Pushers: configuration only (delivery is the pusher worker's). Not in the sync token.
        from hs.handlers.pushers import PusherReader, PusherWriter
        from hs.storage.pushers import PusherStore
        self.pusher_store = PusherStore(db)
        self.pusher_stream = self._position("pushers", "pushers", "stream_id",
                                               extra_tables=[("deleted_pushers", "stream_id")])
        self.pusher_reader = PusherReader(self.pusher_store)
        self.pushers = PusherWriter(self.pusher_store, self.pusher_stream)
        self.sessions.devices_deleted_listeners.append(self.pushers.remove_pushers_of_deleted_devices)
        self.device_handler.devices_deleted_listeners.append(self.pushers.remove_pushers_of_deleted_devices)
        self.account.devices_deleted_listeners.append(self.pushers.remove_pushers_of_deleted_devices)

        # Email 3PIDs (addresses bound to accounts: what an email pusher may send to) and email
        # notifications: the mailer, email pushers' state and their unsubscribe links.
        from hs.handlers.threepids import ThreepidHandler
        from hs.push.email_pusher import EmailPusherFactory, EmailUnsubscriber
        from hs.push.mailer import Mailer
        from hs.storage.email_push import EmailPushStore
        from hs.storage.threepids import ThreepidStore
        self.mailer = Mailer(config.email)
        self.threepid_store = ThreepidStore(db)
        self.threepids = ThreepidHandler(config, self.threepid_store, self.uia, self.mailer,
                                         RateLimiter(config.rc_3pid_validation), self.pushers)
        self.pushers.threepids = self.threepids
        self.account.deactivated_listeners.append(self.threepids.on_deactivated)
        self.email_push_store = EmailPushStore(db)
        self.email_pushers = EmailPusherFactory(config, self.email_push_store, self.mailer, self.events, self.state,
                                                self.event_stream)
        self.email_unsubscriber = EmailUnsubscriber(self.email_push_store, self.pushers)

        # Send-to-device: each device's inbox, read (and acknowledged) by its /sync.
        from hs.handlers.to_device import DeviceInbox, SendToDeviceHandler
        from hs.storage.to_device import STREAM_TABLES, ToDeviceStore
        self.to_device_store = ToDeviceStore(db)
        self.to_device_stream = self._position("to_device", "device_inbox", "stream_id", extra_tables=STREAM_TABLES)
        self.streams.add("to_device", self.to_device_stream)
        self.send_to_device = SendToDeviceHandler(config.server_name, self.to_device_store, self.devices,
                                                  self.to_device_stream,
                                                  StreamWriteNotifier(self.notifier, self.to_device_stream))
        self.sync.to_device = DeviceInbox(self.to_device_store)

        # Device lists: a row per change of a user's device list; /sync's device_lists and
        # GET /keys/changes say whose keys to refetch. Every path that adds, deletes or renames
        # a device (or uploads its keys) reports it here.
        from hs.handlers.device_lists import DeviceListReader, DeviceListWriter
        from hs.storage.device_lists import DeviceListStore
        self.device_list_store = DeviceListStore(db)
        self.device_list_stream = self._position("device_lists", "device_lists_stream", "stream_id")
        self.streams.add("device_list", self.device_list_stream)
        self.device_lists = DeviceListReader(self.device_list_store)
        self.device_lists.membership_changes = self.membership_changes
        self.device_list_writer = DeviceListWriter(self.device_list_store, self.device_list_stream,
                                                   StreamWriteNotifier(self.notifier, self.device_list_stream),
                                                   self.rooms)
        devices_changed = self.device_list_writer.user_devices_changed
        self.sessions.devices_added_listeners.append(devices_changed)
        self.sessions.devices_deleted_listeners.append(devices_changed)
        self.device_handler.devices_deleted_listeners.append(devices_changed)
        self.device_handler.device_renamed_listeners.append(devices_changed)
        self.account.devices_deleted_listeners.append(devices_changed)
        self.sync.device_lists = self.device_lists

        # The deprecated /events and /initialSync, built from what /sync reads.
        from hs.handlers.legacy_sync import LegacySyncHandler
        self.legacy_sync = LegacySyncHandler(self.streams, self.notifier, self.sync.room_sync, self.sync_store,
                                             self.rooms, self.events, self.room_reads, self.account_data,
                                             self.typing, self.receipts, self.presence)

        # Push rules: the predefined rules merged with each user's own; changes are carried in
        # /sync as the m.push_rules account data event.
        from hs.handlers.push_rules import PushRulesHandler, PushRulesReader
        from hs.storage.push_rules import PushRuleWriteStore
        self.push_rule_store = PushRuleWriteStore(db)
        self.push_rules_stream = self._position("push_rules", "push_rules_stream", "stream_id")
        self.streams.add("push_rules", self.push_rules_stream)
        self.push_rules_reader = PushRulesReader(self.push_rule_store)
        self.push_rules = PushRulesHandler(self.push_rules_reader, self.push_rule_store, self.push_rules_stream,
                                           StreamWriteNotifier(self.notifier, self.push_rules_stream))
        self.sync.push_rules = self.push_rules_reader

        # Push actions: every event's push rules run once per local member before it is persisted,
        # the notifying actions written in its transaction; read back as /sync's unread counts
        # and GET /notifications.
        from hs.handlers.push_actions import PushActionReader, PushActionWriter
        from hs.storage.push_actions import PushActionStore
        self.push_action_store = PushActionStore(db)
        self.push_action_writer = PushActionWriter(config.server_name, self.rooms, self.push_rules_reader,
                                                   self.push_action_store)
        self.event_creation.persist_preparers.append(self.push_action_writer.prepare)
        self.event_creation.persisted_listeners.append(self.push_action_writer.on_persisted)
        self.push_action_reader = PushActionReader(self.push_action_store, self.events, self.room_reads)
        self.sync.push_actions = self.push_action_reader

        # Push delivery: the pool runs every pusher in the one process that pushes (apps/master.py
        # with start_pushers, else the pusher worker); each kind registers its factory here.
        from hs.push.http_pusher import HttpPusherFactory
        from hs.push.outbound import OutboundHttp
        from hs.push.pool import PusherPool
        from hs.storage.push_delivery import PushDeliveryStore
        self.push_delivery_store = PushDeliveryStore(db)
        self.pusher_pool = PusherPool(self.push_delivery_store, self.pusher_store, self.receipt_store,
                                      self.event_stream, self.receipt_stream, self.pusher_stream)
        self.pusher_pool.factories["http"] = HttpPusherFactory(
            config, self.push_delivery_store, OutboundHttp(config.ip_range_blacklist, config.ip_range_whitelist),
            self.events, self.state, self.rooms, self.push_action_store, self.event_stream, self.pushers.remove_pusher)
        if config.email.enable_notifs:  # as Synapse: email pushers may be set either way, but mail only then
            self.pusher_pool.factories["email"] = self.email_pushers

        # End-to-end encryption keys: read anywhere (queries, /sync's counts); uploads and claims
        # are the master's.
        from hs.handlers.e2e_keys import E2eKeysHandler, E2eKeysReader
        from hs.storage.e2e_keys import E2eKeyWriteStore
        self.e2e_key_store = E2eKeyWriteStore(db)
        self.e2e_keys_reader = E2eKeysReader(config.server_name, self.e2e_key_store)
        self.e2e_keys = E2eKeysHandler(config.server_name, self.e2e_key_store)
        self.sync.e2e_keys = self.e2e_keys_reader
        self.e2e_keys.device_keys_changed_listeners.append(self.device_list_writer.user_devices_changed)

        # Cross-signing keys and signatures: /keys/query sections anywhere, uploads on the master.
        from hs.handlers.cross_signing import CrossSigningHandler, CrossSigningReader
        from hs.storage.cross_signing import CrossSigningStore
        self.cross_signing_store = CrossSigningStore(db)
        self.e2e_keys_reader.query_extenders.append(CrossSigningReader(self.cross_signing_store).extend_query)
        self.cross_signing = CrossSigningHandler(self.cross_signing_store, self.e2e_key_store, self.uia)
        self.cross_signing.keys_changed_listeners.append(self.device_list_writer.user_devices_changed)
        self.account.deactivated_listeners.append(self.cross_signing_store.delete_user_keys)

        # Server-side key backups (/room_keys): plain per-user storage, no stream.
        from hs.handlers.key_backup import KeyBackupHandler
        from hs.storage.key_backup import KeyBackupStore
        self.key_backup_store = KeyBackupStore(db)
        self.key_backup = KeyBackupHandler(self.key_backup_store)
        # As Synapse: a deactivated account's backups are gone (its devices' keys went with them).
        self.account.deactivated_listeners.append(self.key_backup_store.delete_user_backups)

        # Dehydrated devices (MSC3814): a tokenless device whose keys go through the key upload
        # and whose inbox is the to-device one; replacing or deleting it changes the device list.
        from hs.handlers.dehydrated_devices import DehydratedDeviceHandler
        from hs.storage.dehydrated_devices import DehydratedDeviceStore
        self.dehydrated_devices = DehydratedDeviceHandler(DehydratedDeviceStore(db), self.devices, self.e2e_keys,
                                                          self.to_device_store, self.to_device_stream)
        self.dehydrated_devices.devices_changed_listeners.append(self.device_list_writer.user_devices_changed)

        # The media repository: built in every process, since the media_repository worker
        # writes its own tables and files; apps/master.py serves it when enable_media_repo.
        from hs.handlers.media import MediaHandler
        from hs.media.filestore import MediaFileStore
        from hs.storage.media import MediaStore
        self.media_files = MediaFileStore(config.media_store_path)
        self.media_store = MediaStore(db)
        self.media = MediaHandler(config, self.media_store, self.media_files)
        from hs.handlers.thumbnails import ThumbnailHandler
        from hs.storage.media_thumbnails import ThumbnailStore
        self.thumbnail_store = ThumbnailStore(db)
        self.thumbnails = ThumbnailHandler(config, self.media_store, self.thumbnail_store, self.media_files)
        self.media.uploaded_listeners.append(self.thumbnails.pregenerate)
        from hs.handlers.media_admin import MediaAdminHandler
        from hs.storage.media_admin import MediaAdminStore
        self.media_admin = MediaAdminHandler(config, self.registration_token_admin, self.accounts, self.media_store,
                                             MediaAdminStore(db, config.server_name), self.media_files)

        self._build_federation_transport()
        # Other servers' media: fetched over federation, cached beside ours, thumbnailed here.
        from hs.handlers.remote_media import RemoteMediaHandler
        from hs.storage.remote_media import RemoteMediaStore
        self.remote_media = RemoteMediaHandler(config, RemoteMediaStore(db), self.media_files, self.federation_client)
        self.remote_media.fetched_listeners.append(self.thumbnails.pregenerate)
        self.media.remote = self.media_admin.remote_media = self.remote_media
        self._build_federation_rooms()
        self._build_federation_e2e()
        self._build_federation_edus()

    def _build_federation_transport(self) -> None:
        """Signed requests to other servers, their keys, and the check of their signed requests
        to us (the app's middleware calls hs.auth.servers for every FederationResource)."""
        from hs.api.federation.base import FederationAuthenticator
        from hs.federation.http_client import FederationClient
        from hs.federation.keyring import Keyring
        from hs.storage.server_keys import ServerKeyStore
        self.federation_client = FederationClient(self.config, self.signing_keys[0])
        self.keyring = Keyring(self.config, ServerKeyStore(self.db), self.federation_client, self.signing_keys)
        self.auth.servers = FederationAuthenticator(self)

    def _build_federation_edus(self) -> None:
        """EDUs both ways: inbound ones applied (a worker forwards them to the master), and the
        sender of everything outbound, on the master with send_federation (apps/master.py starts it)."""
        from hs.handlers.federation_edus import FederationEduHandler
        from hs.storage.federation_edus import FederationEduStore
        self.federation_edus = FederationEduHandler(
            self.config.server_name, self.rooms, self.events, self.typing, self.receipts, self.presence_writer,
            self.remote_device_lists, self.devices, self.to_device_stream,
            self.send_to_device.stream_notifier, FederationEduStore(self.db))
        self.federation_sender = None
        if not self.is_worker and self.config.send_federation:
            from hs.federation.sender import FederationSender
            self.federation_sender = FederationSender(self)
        self.federation_events.edus = self.federation_edus
        self.federation_edus.server_allowed = self.federation_serving.server_allowed
        # Called for every authenticated inbound request (a worker forwards it to the master).
        self.wake_destination = (self.federation_sender.wake_destination if self.federation_sender is not None
                                 else lambda origin: None)
        self.federation_membership.sender = self.federation_sender

    def _build_federation_e2e(self) -> None:
        """Keys and device lists of other servers' users (queries, claims, the cached lists the
        master keeps in step from their EDUs), and ours served to other servers."""
        from hs.handlers.e2e_federation import E2eFederation
        from hs.handlers.remote_device_lists import RemoteDeviceLists
        from hs.storage.remote_device_lists import RemoteDeviceListStore
        store = RemoteDeviceListStore(self.db, self.config.server_name)
        self.remote_device_lists = RemoteDeviceLists(store, self.federation_client,
                                                     None if self.is_worker else self.device_list_writer)
        self.e2e_federation = E2eFederation(self.config.server_name, store, self.federation_client,
                                            self.e2e_keys_reader, self.e2e_keys, self.devices,
                                            self.config.allow_device_name_lookup_over_federation)
        for keys in (self.e2e_keys_reader, self.e2e_keys):
            keys.remote = self.e2e_federation
            keys.remote_timeout_ceiling_ms = self.config.federation_client_timeout_ms

    def _build_federation_rooms(self) -> None:
        """Rooms shared with other servers: receiving their events (/send, joins, invites) and
        membership across servers. hs.federation_client and hs.keyring are built before."""
        from hs.handlers.federation_events import FederationEventHandler
        from hs.handlers.federation_membership import FederationMembershipHandler
        from hs.storage.federation_events import FederationEventStore
        self.federation_event_store = FederationEventStore(self.db)
        self.federation_events = FederationEventHandler(self.config, self.rooms, self.events, self.state,
                                                        self.event_creation, self.federation_event_store,
                                                        self.keyring, self.federation_client)
        self.federation_membership = FederationMembershipHandler(
            self.config, self.db, self.rooms, self.events, self.state, self.event_creation, self.federation_events,
            self.federation_event_store, self.federation_client, self.signing_keys[0])
        self.federation_membership.restricted_authoriser = self.membership.restricted_join_authoriser
        self.membership.federation = self.federation_membership
        from hs.handlers.federation_serving import FederationServing
        from hs.storage.federation_reads import FederationReadStore
        self.federation_serving = FederationServing(self.config, self.rooms, self.events, self.state,
                                                    self.federation_event_store, FederationReadStore(self.db),
                                                    self.accounts, self.federation_client)
        self.federation_events.server_allowed = self.federation_serving.server_allowed
        self.membership.lookup_remote_alias = self.federation_serving.lookup_remote_alias
        self.directory.lookup_remote_alias = self.federation_serving.lookup_remote_alias
        self.profile.remote_profile = self.federation_serving.remote_profile
        from hs.handlers.federation_directory import FederationDirectory
        self.federation_directory = FederationDirectory(self.config, self.rooms, self.room_summaries, self.directory,
                                                        self.federation_client)
        self.directory.remote_public_rooms = self.federation_directory.remote_public_rooms
        self.federation_directory.lookup_remote_alias = self.federation_serving.lookup_remote_alias
        self.room_summaries.federation = self.federation_directory
        if not self.is_worker:
            from hs.handlers.federation_backfill import Backfiller
            self.backfiller = Backfiller(self.config, self.rooms, self.event_creation, self.federation_events,
                                         self.federation_event_store, self.federation_client)
            self.room_reads.backfill = self.backfiller.backfill

    def _position(self, name: str, table: str, column: str, **kwargs):
        """A stream's position source: its id generator on the master (the single writer), what
        replication has applied on a worker."""
        if self.is_worker:
            return ReplicatedPosition(name)
        return StreamIdGenerator(self.db, table, column, **kwargs)
