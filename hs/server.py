"""The homeserver's composition root: config, database, stores and handlers for one process.

Every app builds one of these and picks which resources to serve from it. Stores and
handlers are plain attributes built once, in dependency order; nothing is created lazily.
"""

import logging
import os

from hs.config import ConfigError
from hs.events.signing import (
    generate_signing_key,
    read_signing_keys,
    write_signing_keys,
)
from hs.handlers.account import AccountHandler
from hs.handlers.account_data import AccountDataHandler, AccountDataNotifier
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
from hs.handlers.sync_rooms import RoomSync
from hs.handlers.uia import UiaHandler
from hs.handlers.user_directory import UserDirectoryHandler
from hs.notifier import Notifier, RoomEventNotifier
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
from hs.streams import Streams

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
    def __init__(self, config, db: Database, signing_keys: list):
        self.config = config
        self.db = db
        self.signing_keys = signing_keys
        self.limiters = Limiters(config)

        self.accounts = AccountStore(db)
        self.devices = DeviceStore(db)
        self.tokens = TokenStore(db)
        self.uia_sessions = UiaStore(db)
        self.registration_tokens = RegistrationTokenStore(db)

        self.hasher = PasswordHasher(pepper=config.password_pepper)
        self.auth = AuthHandler(self.tokens, self.devices)
        self.uia = UiaHandler(config.server_name, self.uia_sessions, self.accounts, self.hasher,
                              self.registration_tokens, self.limiters.login_failed,
                              config.ui_auth_session_lifetime_ms)
        self.sessions = SessionHandler(config, db, self.accounts, self.tokens, self.hasher, self.limiters)
        self.registration = RegistrationHandler(config, db, self.accounts, self.hasher, self.sessions, self.uia,
                                                self.limiters)
        self.device_handler = DeviceHandler(self.devices, self.uia)
        self.admin_registration = AdminRegistrationHandler(config, db, self.hasher, self.registration,
                                                           self.sessions)
        self.registration_token_admin = RegistrationTokenAdminHandler(self.accounts, self.registration_tokens)

        self.rooms = RoomStore(db)
        self.state = StateStore(db)
        self.events = EventStore(db, self.state)
        # Only the master writes events; it is the single allocator of their stream ids.
        self.event_stream = StreamIdGenerator(db, "events", "stream_ordering")
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
        self.room_event_notifier = RoomEventNotifier(self.notifier, self.event_stream)
        self.streams = Streams(self.event_stream)
        # A member event also wakes the user it is about: an invitee or a joiner on another
        # device is not yet among the room's waiters.
        self.event_creation.persisted_listeners.append(event_persisted_listener(self.room_event_notifier))
        self.sync_store = SyncStore(db)
        self.sync = SyncHandler(self.streams, self.notifier,
                                RoomSync(self.sync_store, self.events, self.state, self.room_reads))

        # Account data and tags: their own stream, carried in /sync's account_data sections.
        self.account_data_store = AccountDataStore(db)
        self.account_data_stream = StreamIdGenerator(db, "account_data", "stream_id")
        self.streams.account_data_stream = self.account_data_stream
        self.account_data = AccountDataHandler(self.account_data_store, self.account_data_stream,
                                               AccountDataNotifier(self.notifier, self.account_data_stream))
        self.sync.account_data = self.account_data

        # Typing (in memory on the master) and receipts: /sync's ephemeral events.
        from hs.handlers.receipts import ReceiptHandler, StreamNotifier
        from hs.handlers.typing import TypingHandler
        from hs.storage.receipts import ReceiptStore
        self.typing = TypingHandler(self.rooms, self.notifier)
        self.streams.typing_stream = self.typing
        self.receipt_store = ReceiptStore(db)
        self.receipt_stream = StreamIdGenerator(db, "receipts", "stream_id")
        self.streams.receipt_stream = self.receipt_stream
        self.receipts = ReceiptHandler(self.receipt_store, self.receipt_stream,
                                       StreamNotifier(self.notifier, self.receipt_stream), self.rooms, self.events,
                                       self.room_reads, self.account_data)
        self.sync.typing = self.typing
        self.sync.receipts = self.receipts
