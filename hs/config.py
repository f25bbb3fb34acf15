"""Load and validate homeserver.yaml (and, for workers, the worker file laid over it).

Key names follow Synapse's wherever the meaning matches, so an admin can carry a config over.
Keys we do not know are logged and ignored rather than refused, for the same reason.
"""

import ipaddress
import logging
import os
import re
from dataclasses import dataclass, field

import yaml

from hs.events.room_versions import KNOWN_ROOM_VERSIONS

logger = logging.getLogger(__name__)

HTTP_RESOURCE_NAMES = {"client", "federation", "media", "metrics", "replication", "keys", "openid"}
_SERVER_NAME = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]{1,255})(:[0-9]{1,5})?$")
_REQUIRED = object()
_DEFAULT_LISTENERS = [{"port": 8008, "type": "http", "bind_addresses": ["127.0.0.1"],
                       "resources": [{"names": ["client", "federation"]}]}]


def is_valid_server_name(name: str) -> bool:
    """The spec's server name grammar: a DNS name, IPv4 or [IPv6] literal, and an optional port."""
    match = _SERVER_NAME.fullmatch(name)
    return bool(match) and (not match.group(2) or 0 < int(match.group(2)[1:]) < 65536)


class ConfigError(Exception):
    """A config problem, worded for the admin: which file, which key, what was expected."""


@dataclass
class RateLimit:
    per_second: float
    burst_count: int


@dataclass
class Listener:
    type: str
    port: int
    bind_addresses: list
    resources: set = field(default_factory=set)
    x_forwarded: bool = False
    tls: bool = False


@dataclass
class PasswordPolicy:
    minimum_length: int = 0
    require_digit: bool = False
    require_symbol: bool = False
    require_lowercase: bool = False
    require_uppercase: bool = False


@dataclass
class EmailConfig:
    enabled: bool
    notif_from: str
    smtp_host: str
    smtp_port: int
    smtp_user: str | None
    smtp_pass: str | None
    force_tls: bool
    require_transport_security: bool
    enable_tls: bool
    app_name: str
    enable_notifs: bool
    client_base_url: str
    validation_token_lifetime_ms: int
    notif_delay_before_mail_ms: int


class _Section:
    """Typed reads from one mapping of the YAML, naming the full key path in every error."""

    def __init__(self, path: str, data, prefix: str = ""):
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: {prefix or 'top level'}: expected a mapping, got {type(data).__name__}")
        self.path, self.data, self.prefix = path, data, prefix

    def _key(self, key):
        return f"{self.prefix}.{key}" if self.prefix else key

    def fail(self, key, expected, value):
        raise ConfigError(f"{self.path}: {self._key(key)}: expected {expected}, got {value!r}")

    def get(self, key, kind, default=_REQUIRED, expected=None):
        if key not in self.data or self.data[key] is None:
            if default is _REQUIRED:
                raise ConfigError(f"{self.path}: {self._key(key)}: this key is required")
            return default
        value = self.data[key]
        if expected is None:
            names = {str: "a string", bool: "true or false", int: "an integer", float: "a number",
                     list: "a list", dict: "a mapping"}
            kinds = kind if isinstance(kind, tuple) else (kind,)
            expected = " or ".join(names.get(k, k.__name__) for k in kinds)
        if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
            self.fail(key, expected, value)
        if kind is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                self.fail(key, "a number", value)
            return float(value)
        if not isinstance(value, kind):
            self.fail(key, expected, value)
        return value

    def section(self, key) -> "_Section":
        return _Section(self.path, self.data.get(key), self._key(key))

    def size(self, key, default):
        """Sizes as Synapse writes them: an integer of bytes, or '50M', '10K', '1G'."""
        value = self.data.get(key)
        if value is None:
            value = default
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        match = re.fullmatch(r"\s*(\d+)\s*([KMG]?)B?\s*", str(value), re.IGNORECASE)
        if not match:
            self.fail(key, "a size such as 50M or a number of bytes", value)
        return int(match.group(1)) * {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}[match.group(2).upper()]

    def duration_ms(self, key, default, nullable: bool = False):
        """Durations as Synapse writes them: milliseconds, or '30s', '5m', '1h', '7d', '1w', '1y'.

        An explicit null means "never" only where ``nullable`` (token lifetimes, as in Synapse);
        elsewhere it means the default, as for every other key."""
        value = self.data.get(key, default)
        if value is None and not (nullable and key in self.data):
            value = default
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        match = re.fullmatch(r"\s*(\d+)\s*(ms|s|m|h|d|w|y)\s*", str(value))
        if not match:
            self.fail(key, "a duration such as 30s, 5m, 1h or 7d", value)
        unit = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000,
                "w": 604_800_000, "y": 31_536_000_000}[match.group(2)]
        return int(match.group(1)) * unit

    def rate_limit(self, key, per_second, burst_count) -> RateLimit:
        sect = self.section(key)
        limit = RateLimit(sect.get("per_second", float, float(per_second)),
                          sect.get("burst_count", int, burst_count))
        if limit.per_second < 0:
            sect.fail("per_second", "a number of at least 0", limit.per_second)
        if limit.burst_count < 1:  # a bucket that never holds one request refuses every request
            sect.fail("burst_count", "an integer of at least 1", limit.burst_count)
        return limit


class HomeServerConfig:
    """The validated configuration. Attributes are plain values; nothing here does I/O after load."""

    def __init__(self, path: str, data: dict):
        self.config_path = os.path.abspath(path)
        self.config_dir = os.path.dirname(self.config_path)
        top = _Section(path, data)
        self._read_server(top)
        self.listeners = self.read_listeners(top)
        self._read_duties(top)
        self._read_database(top)
        self._read_registration(top)
        self._read_limits(top)
        self._read_media(top)
        self._read_app_services(top)
        self._read_email(top)
        self._read_push(top)
        self._read_federation(top)
        self._warn_unknown(data)

    def _abs(self, value):
        return value if os.path.isabs(value) else os.path.join(self.config_dir, value)

    def _read_server(self, top: _Section):
        self.server_name = top.get("server_name", str)
        if not is_valid_server_name(self.server_name):
            top.fail("server_name", "a server name such as example.org or example.org:8448", self.server_name)
        self.public_baseurl = top.get("public_baseurl", str, None)
        if self.public_baseurl and not re.match(r"^https?://", self.public_baseurl):
            top.fail("public_baseurl", "an http:// or https:// URL", self.public_baseurl)
        if self.public_baseurl and not self.public_baseurl.endswith("/"):
            self.public_baseurl += "/"
        self.serve_server_wellknown = top.get("serve_server_wellknown", bool, False)
        self.data_dir = self._abs(top.get("data_dir", str, "data"))
        self.pid_file = self._abs(top.get("pid_file", str, "homeserver.pid"))
        self.signing_key_path = self._abs(top.get("signing_key_path", str, f"{self.server_name}.signing.key"))
        self.key_refresh_interval_ms = top.duration_ms("key_refresh_interval", "1d")
        self.log_config = top.get("log_config", str, None)
        if self.log_config:
            self.log_config = self._abs(self.log_config)
        self.log_file = self._abs(top.get("log_file", str, "homeserver.log"))
        self.default_room_version = str(top.get("default_room_version", (str, int), "12",
                                                expected="a room version such as \"12\""))
        if self.default_room_version not in KNOWN_ROOM_VERSIONS:
            top.fail("default_room_version", f"one of {', '.join(KNOWN_ROOM_VERSIONS)}", self.default_room_version)
        presence = top.section("presence")
        self.presence_enabled = presence.get("enabled", bool, True)
        # Synapse's fixed IDLE_TIMER and SYNC_ONLINE_TIMEOUT; not in the generated config, they
        # are settable so that tests need not wait minutes.
        self.presence_idle_timeout_ms = presence.duration_ms("idle_timeout", "5m")
        self.presence_sync_online_timeout_ms = presence.duration_ms("sync_online_timeout", "30s")
        # Synapse's FEDERATION_TIMEOUT: a remote user we hear nothing of for this long is offline.
        self.presence_federation_timeout_ms = presence.duration_ms("federation_timeout", "30m")
        # Our users' presence to other servers (Dendrite's enable_outbound; Synapse has no such
        # switch): a big deployment may turn it off and keep receiving others'.
        self.presence_federation_outbound = presence.get("federation_outbound", bool, True)
        self.allow_guest_access = top.get("allow_guest_access", bool, False)

    @staticmethod
    def read_listeners(top: _Section, key: str = "listeners", kinds=("http", "replication", "metrics"),
                       default=_DEFAULT_LISTENERS) -> list:
        """``key`` as a list of Listener; also reads a worker file's ``worker_listeners``."""
        raw = top.get(key, list, default)
        listeners = []
        seen = set()
        for i, item in enumerate(raw):
            sect = _Section(top.path, item, f"{key}[{i}]")
            kind = sect.get("type", str)
            if kind not in kinds:
                sect.fail("type", f"{', '.join(kinds[:-1])} or {kinds[-1]}", kind)
            port = sect.get("port", int)
            if not 0 < port < 65536:
                sect.fail("port", "a port between 1 and 65535", port)
            binds = sect.get("bind_addresses", list, None)
            if binds is None:
                bind = sect.get("bind_address", str, "127.0.0.1")
                binds = [bind]
            if not binds:
                sect.fail("bind_addresses", "at least one IP address such as 127.0.0.1", binds)
            for addr in binds:
                try:
                    if not isinstance(addr, str):
                        raise ValueError(addr)
                    ipaddress.ip_address(addr)
                except ValueError:
                    sect.fail("bind_addresses", "IP addresses such as 127.0.0.1 or ::1", addr)
                if (addr, port) in seen:
                    sect.fail("bind_addresses", f"an address and port no other listener uses ({port})", addr)
                seen.add((addr, port))
            resources = set()
            for j, res in enumerate(sect.get("resources", list, [])):
                res_sect = _Section(top.path, res, f"{key}[{i}].resources[{j}]")
                for name in res_sect.get("names", list):
                    if not isinstance(name, str) or name not in HTTP_RESOURCE_NAMES:
                        res_sect.fail("names", f"names among {', '.join(sorted(HTTP_RESOURCE_NAMES))}", name)
                    resources.add(name)
            tls = sect.get("tls", bool, False)
            if tls and kind != "http":
                sect.fail("tls", "false on a listener that is not of type http", tls)
            listeners.append(Listener(kind, port, binds, resources, sect.get("x_forwarded", bool, False), tls))
        if not any(lst.type == "http" for lst in listeners):
            raise ConfigError(f"{top.path}: {key}: at least one listener of type http is required")
        # gunicorn binds the plain listeners; the app binds `tls: true` ones itself
        # (hs/federation/tls_listener.py), so at least one must be plain.
        if not any(lst.type == "http" and not lst.tls for lst in listeners):
            raise ConfigError(f"{top.path}: {key}: at least one listener of type http without tls is required")
        return listeners

    def _read_duties(self, top: _Section):
        """The duties the master hands to a worker by switching them off here, and the replication secret.

        The replication listeners carry every stream and accept writes on the master's behalf, with no
        user authentication: reachable from beyond this machine they need ``replication_secret``."""
        self.enable_media_repo = top.get("enable_media_repo", bool, True)
        self.start_pushers = top.get("start_pushers", bool, True)
        self.notify_appservices = top.get("notify_appservices", bool, True)
        self.replication_secret = top.get("replication_secret", str, None)
        if self.replication_secret == "":
            top.fail("replication_secret", "a non-empty string", "")
        if self.replication_secret is None:
            replication = self.replication_listeners() + self.internal_api_listeners()
            for i, lst in enumerate(self.listeners):
                if lst in replication:
                    exposed = [a for a in lst.bind_addresses if not ipaddress.ip_address(a).is_loopback]
                    if exposed:
                        raise ConfigError(
                            f"{top.path}: listeners[{i}]: binds replication to {', '.join(exposed)}, beyond "
                            "loopback, and replication_secret is not set: anyone who reaches that port could "
                            "read every stream and write as the master. Bind it to 127.0.0.1, or opt in by "
                            "setting replication_secret (a long random string) in this file.")

    def replication_listeners(self) -> list:
        """The TCP replication listeners (``type: replication``) the master serves its streams on."""
        return [lst for lst in self.listeners if lst.type == "replication"]

    def internal_api_listeners(self) -> list:
        """The http listeners serving the ``replication`` resource: the internal API workers write through."""
        return [lst for lst in self.listeners if lst.type == "http" and "replication" in lst.resources]

    def _read_database(self, top: _Section):
        """With no `database` section the master runs an embedded PostgreSQL in data_dir."""
        self.database_dsn = None
        self.database_max_connections = 10
        if "database" not in top.data or top.data["database"] is None:
            return
        db = top.section("database")
        name = db.get("name", str, "psycopg2")
        if name in ("sqlite3", "sqlite"):
            raise ConfigError(f"{top.path}: database.name: SQLite is not supported, this homeserver runs on "
                              "PostgreSQL only: set name: psycopg2 and its args, or remove the database "
                              "section to use the embedded PostgreSQL in data_dir")
        if name != "psycopg2":
            db.fail("name", "psycopg2 (this homeserver runs on PostgreSQL only)", name)
        args = db.section("args")
        self.database_max_connections = args.get("cp_max", int, 10)
        if self.database_max_connections < 1:
            args.fail("cp_max", "an integer of at least 1", self.database_max_connections)
        if "dsn" in args.data:
            self.database_dsn = args.get("dsn", str)
            return
        parts = {}
        for key, pg_key in (("user", "user"), ("password", "password"), ("database", "dbname"),
                            ("dbname", "dbname"), ("host", "host"), ("port", "port"), ("sslmode", "sslmode")):
            if key in args.data:
                parts[pg_key] = str(args.get(key, (str, int), expected="a string"))
        if "dbname" not in parts:
            raise ConfigError(f"{top.path}: database.args.database: this key is required")

        def quote(v):
            return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"
        self.database_dsn = " ".join(f"{k}={quote(v)}" for k, v in parts.items())

    def _read_registration(self, top: _Section):
        self.enable_registration = top.get("enable_registration", bool, False)
        self.enable_registration_without_verification = top.get(
            "enable_registration_without_verification", bool, False)
        self.registration_shared_secret = top.get("registration_shared_secret", str, None)
        self.registration_requires_token = top.get("registration_requires_token", bool, False)
        pw = top.section("password_config")
        self.password_enabled = pw.get("enabled", bool, True) and pw.get("localdb_enabled", bool, True)
        self.password_pepper = pw.get("pepper", str, "")
        policy = pw.section("policy")
        configured = PasswordPolicy(
            policy.get("minimum_length", int, 0), policy.get("require_digit", bool, False),
            policy.get("require_symbol", bool, False), policy.get("require_lowercase", bool, False),
            policy.get("require_uppercase", bool, False))
        # As in Synapse, a policy applies only when it says `enabled: true`.
        self.password_policy = configured if policy.get("enabled", bool, False) else PasswordPolicy()
        # Synapse's names for token lifetimes; None means access tokens do not expire.
        self.refreshable_access_token_lifetime_ms = top.duration_ms("refreshable_access_token_lifetime", "5m",
                                                                    nullable=True)
        self.refresh_token_lifetime_ms = top.duration_ms("refresh_token_lifetime", None, nullable=True)
        self.nonrefreshable_access_token_lifetime_ms = top.duration_ms("nonrefreshable_access_token_lifetime", None,
                                                                       nullable=True)
        self.ui_auth_session_lifetime_ms = top.section("ui_auth").duration_ms("session_lifetime", "15m")
        login_token = top.section("login_via_existing_session")
        self.login_token_enabled = login_token.get("enabled", bool, False)
        self.login_token_require_ui_auth = login_token.get("require_ui_auth", bool, True)
        self.login_token_timeout_ms = login_token.duration_ms("token_timeout", "5m")

    def _read_limits(self, top: _Section):
        self.rc_message = top.rate_limit("rc_message", 0.2, 10)
        self.rc_registration = top.rate_limit("rc_registration", 0.17, 3)
        login = top.section("rc_login")
        self.rc_login_address = login.rate_limit("address", 0.17, 3)
        self.rc_login_account = login.rate_limit("account", 0.17, 3)
        self.rc_login_failed_attempts = login.rate_limit("failed_attempts", 0.17, 3)
        self.max_request_body_size = top.size("max_request_body_size", "10M")

    def _read_media(self, top: _Section):
        """The media repository's keys, as Synapse names them."""
        self.media_store_path = self._abs(top.get("media_store_path", str, "media_store"))
        self.max_upload_size = top.size("max_upload_size", "50M")
        # Media uploaded while this is on can't be fetched from the unauthenticated
        # /_matrix/media/v3 download and thumbnail endpoints (the spec's "freeze").
        self.enable_authenticated_media = top.get("enable_authenticated_media", bool, True)
        self.max_pending_media_uploads = top.get("max_pending_media_uploads", int, 5)
        if self.max_pending_media_uploads < 1:
            top.fail("max_pending_media_uploads", "an integer of at least 1", self.max_pending_media_uploads)
        self.unused_expiration_time_ms = top.duration_ms("unused_expiration_time", "24h")
        self.max_image_pixels = top.size("max_image_pixels", "32M")
        self.dynamic_thumbnails = top.get("dynamic_thumbnails", bool, False)
        self.thumbnail_sizes = self._read_thumbnail_sizes(top)
        self.url_preview_enabled = top.get("url_preview_enabled", bool, False)
        if self.url_preview_enabled:
            top.fail("url_preview_enabled", "false (URL previews are not built yet)", True)
        retention = top.section("media_retention")
        # None keeps media for ever, Synapse's default.
        self.media_retention_local_ms = retention.duration_ms("local_media_lifetime", None)
        self.media_retention_remote_ms = retention.duration_ms("remote_media_lifetime", None)

    def _read_app_services(self, top: _Section):
        """Each registration file is read and validated now, so a bad one stops the start with its name."""
        from hs.appservice.registration import load_app_services  # it reads files with this module's helpers
        paths = top.get("app_service_config_files", list, [])
        for i, path in enumerate(paths):
            if not isinstance(path, str) or not path:
                top.fail(f"app_service_config_files[{i}]", "a path to a registration file", path)
        self.app_service_config_files = [self._abs(p) for p in paths]
        self.app_services = load_app_services(self.server_name, self.app_service_config_files)

    def _read_email(self, top: _Section):
        """The `email:` section (Synapse's keys): SMTP, notification emails and email 3PIDs.
        Email is off unless `notif_from` is set, as Synapse's threepid email behaviour."""
        sect = top.section("email")
        notif_from = sect.get("notif_from", str, None)
        force_tls = sect.get("force_tls", bool, False)
        email = EmailConfig(
            enabled=bool(notif_from), notif_from=notif_from or "",
            smtp_host=sect.get("smtp_host", str, "localhost"),
            smtp_port=sect.get("smtp_port", int, 465 if force_tls else 25),
            smtp_user=sect.get("smtp_user", str, None), smtp_pass=sect.get("smtp_pass", str, None),
            force_tls=force_tls,
            require_transport_security=sect.get("require_transport_security", bool, False),
            enable_tls=sect.get("enable_tls", bool, True),
            app_name=sect.get("app_name", str, "Matrix"),
            enable_notifs=sect.get("enable_notifs", bool, False),
            client_base_url=sect.get("client_base_url", str, "https://matrix.to"),
            validation_token_lifetime_ms=sect.duration_ms("validation_token_lifetime", "1h"),
            # Not in Synapse's documented config (its 10 minutes are fixed); settable so that
            # tests need not wait, and left out of the generated config.
            notif_delay_before_mail_ms=sect.duration_ms("notif_delay_before_mail", "10m"))
        if not 0 < email.smtp_port < 65536:
            sect.fail("smtp_port", "a port between 1 and 65535", email.smtp_port)
        if email.force_tls and email.require_transport_security:
            sect.fail("require_transport_security", "false when force_tls is true (TLS from the start)", True)
        if email.enable_notifs and not email.enabled:
            sect.fail("notif_from", "a From address such as \"Matrix <noreply@example.org>\" when "
                      "enable_notifs is true", None)
        if (email.smtp_user is None) != (email.smtp_pass is None):
            sect.fail("smtp_pass" if email.smtp_pass is None else "smtp_user",
                      "smtp_user and smtp_pass set together", None)
        self.email = email
        self.rc_3pid_validation = top.rate_limit("rc_3pid_validation", 0.003, 5)

    def _read_push(self, top: _Section):
        """Outbound requests to push gateways (Synapse's ip_range_blacklist / ip_range_whitelist,
        whose default blocks private, loopback, link-local and multicast ranges) and `push:`."""
        from hs.push.outbound import DEFAULT_IP_RANGE_BLACKLIST  # the list lives with its only user
        self.ip_range_blacklist = self._ip_ranges(top, "ip_range_blacklist", DEFAULT_IP_RANGE_BLACKLIST)
        self.ip_range_whitelist = self._ip_ranges(top, "ip_range_whitelist", [])
        sect = top.section("push")
        self.push_include_content = sect.get("include_content", bool, True)
        self.push_group_unread_count_by_room = sect.get("group_unread_count_by_room", bool, True)

    def _read_federation(self, top: _Section):
        """Federation, with Synapse's keys: who we federate with, how outbound requests connect
        (hs/federation/http_client.py), whose keys we trust, the TLS listener's certificate."""
        from hs.push.outbound import DEFAULT_IP_RANGE_BLACKLIST
        whitelist = top.get("federation_domain_whitelist", list, None)
        if whitelist is not None:
            for i, name in enumerate(whitelist):
                if not isinstance(name, str) or not is_valid_server_name(name):
                    top.fail(f"federation_domain_whitelist[{i}]", "a server name such as example.org", name)
            whitelist = frozenset(whitelist)
        self.federation_domain_whitelist = whitelist
        self.federation_verify_certificates = top.get("federation_verify_certificates", bool, True)
        self.federation_custom_ca_list = []
        for i, path in enumerate(top.get("federation_custom_ca_list", list, [])):
            if not isinstance(path, str):
                top.fail(f"federation_custom_ca_list[{i}]", "the path of a PEM file", path)
            self.federation_custom_ca_list.append(self._readable(top, f"federation_custom_ca_list[{i}]", path))
        # As Synapse: the unspecified addresses are refused even with an empty list.
        self.federation_ip_range_blacklist = self._ip_ranges(
            top, "federation_ip_range_blacklist", DEFAULT_IP_RANGE_BLACKLIST) + [
            ipaddress.ip_network("0.0.0.0/32"), ipaddress.ip_network("::/128")]
        self.trusted_key_servers = self._trusted_key_servers(top)
        self.suppress_key_server_warning = top.get("suppress_key_server_warning", bool, False)
        self.old_signing_keys = self._old_signing_keys(top)
        sect = top.section("federation")
        self.federation_client_timeout_ms = sect.duration_ms("client_timeout", "60s")
        self.federation_min_retry_ms = sect.duration_ms("destination_min_retry_interval", "10m")
        self.federation_retry_multiplier = sect.get("destination_retry_multiplier", float, 2.0)
        if self.federation_retry_multiplier < 1:
            sect.fail("destination_retry_multiplier", "a number of at least 1", self.federation_retry_multiplier)
        self.federation_max_retry_ms = sect.duration_ms("destination_max_retry_interval", "7d")
        self.allow_profile_lookup_over_federation = top.get("allow_profile_lookup_over_federation", bool, True)
        self.allow_device_name_lookup_over_federation = top.get("allow_device_name_lookup_over_federation", bool,
                                                                False)
        self.allow_public_rooms_over_federation = top.get("allow_public_rooms_over_federation", bool, False)
        self.send_federation = top.get("send_federation", bool, True)
        self.tls_certificate_path = top.get("tls_certificate_path", str, None)
        self.tls_private_key_path = top.get("tls_private_key_path", str, None)
        if any(lst.tls for lst in self.listeners):
            for key in ("tls_certificate_path", "tls_private_key_path"):
                if getattr(self, key) is None:
                    raise ConfigError(f"{top.path}: {key}: required by the listener with tls: true")
        for key in ("tls_certificate_path", "tls_private_key_path"):
            if getattr(self, key) is not None:
                setattr(self, key, self._readable(top, key, getattr(self, key)))

    def _readable(self, top: _Section, key: str, path: str) -> str:
        path = self._abs(path)
        try:
            with open(path, "rb"):
                pass
        except OSError as e:
            top.fail(key, f"a readable file ({e.strerror})", path)
        return path

    @staticmethod
    def _trusted_key_servers(top: _Section) -> list:
        """[{server_name, verify_keys: {key_id: base64} or None}]; Synapse's default trusts matrix.org."""
        from hs.events.signing import decode_verify_key_base64
        servers = []
        for i, item in enumerate(top.get("trusted_key_servers", list, [{"server_name": "matrix.org"}])):
            sect = _Section(top.path, item, f"trusted_key_servers[{i}]")
            name = sect.get("server_name", str)
            if not is_valid_server_name(name):
                sect.fail("server_name", "a server name such as matrix.org", name)
            verify_keys = sect.get("verify_keys", dict, None)
            for key_id, key in (verify_keys or {}).items():
                try:
                    algorithm, version = str(key_id).split(":", 1)
                    decode_verify_key_base64(algorithm, version, key)
                except (ValueError, TypeError):
                    sect.fail(f"verify_keys.{key_id}", "an ed25519 public key in unpadded base64", key)
            servers.append({"server_name": name, "verify_keys": verify_keys})
        return servers

    @staticmethod
    def _old_signing_keys(top: _Section) -> dict:
        """{key_id: {key, expired_ts}}: keys we signed with before, still published as
        old_verify_keys so that what they signed can be checked."""
        from hs.events.signing import decode_verify_key_base64
        keys = {}
        sect = top.section("old_signing_keys")
        for key_id in sect.data:
            entry = sect.section(key_id)
            key, expired_ts = entry.get("key", str), entry.get("expired_ts", int)
            try:
                algorithm, version = str(key_id).split(":", 1)
                decode_verify_key_base64(algorithm, version, key)
            except ValueError:
                entry.fail("key", "an ed25519 public key in unpadded base64 under a key ID such as ed25519:a_1",
                           key)
            keys[key_id] = {"key": key, "expired_ts": expired_ts}
        return keys

    @staticmethod
    def _ip_ranges(top: _Section, key: str, default: list) -> list:
        networks = []
        for i, value in enumerate(top.get(key, list, default)):
            try:
                networks.append(ipaddress.ip_network(value, strict=False))
            except (TypeError, ValueError):
                top.fail(f"{key}[{i}]", "an IP address or CIDR range such as 10.0.0.0/8", value)
        return networks

    _DEFAULT_THUMBNAIL_SIZES = [{"width": 32, "height": 32, "method": "crop"},
                                {"width": 96, "height": 96, "method": "crop"},
                                {"width": 320, "height": 240, "method": "scale"},
                                {"width": 640, "height": 480, "method": "scale"},
                                {"width": 800, "height": 600, "method": "scale"}]

    def _read_thumbnail_sizes(self, top: _Section) -> list:
        """``thumbnail_sizes``: [{width, height, method: crop|scale}], made when an image is uploaded."""
        sizes = []
        for i, item in enumerate(top.get("thumbnail_sizes", list, self._DEFAULT_THUMBNAIL_SIZES)):
            sect = _Section(top.path, item, f"thumbnail_sizes[{i}]")
            width, height = sect.get("width", int), sect.get("height", int)
            for key, value in (("width", width), ("height", height)):
                if not 0 < value <= 10000:
                    sect.fail(key, "an integer between 1 and 10000", value)
            method = sect.get("method", str, "scale")
            if method not in ("crop", "scale"):
                sect.fail("method", "crop or scale", method)
            sizes.append({"width": width, "height": height, "method": method})
        return sizes

    _KNOWN_KEYS = {
        "server_name", "public_baseurl", "serve_server_wellknown", "data_dir", "pid_file", "signing_key_path",
        "key_refresh_interval", "log_config", "log_file", "media_store_path", "max_upload_size",
        "default_room_version", "presence", "allow_guest_access", "listeners", "database", "enable_registration",
        "enable_registration_without_verification", "registration_shared_secret", "registration_requires_token",
        "password_config", "refreshable_access_token_lifetime", "refresh_token_lifetime",
        "nonrefreshable_access_token_lifetime", "ui_auth", "login_via_existing_session", "rc_message",
        "rc_registration", "rc_login", "max_request_body_size",
        "enable_media_repo", "start_pushers", "notify_appservices", "replication_secret",
        "enable_authenticated_media", "max_pending_media_uploads", "unused_expiration_time", "max_image_pixels",
        "dynamic_thumbnails", "thumbnail_sizes", "url_preview_enabled", "media_retention",
        "app_service_config_files",
        "email", "rc_3pid_validation",
        "ip_range_blacklist", "ip_range_whitelist", "push",
        "federation_domain_whitelist", "federation_verify_certificates", "federation_custom_ca_list",
        "federation_ip_range_blacklist", "trusted_key_servers", "suppress_key_server_warning", "old_signing_keys",
        "federation", "tls_certificate_path", "tls_private_key_path", "allow_profile_lookup_over_federation",
        "allow_public_rooms_over_federation", "send_federation", "allow_device_name_lookup_over_federation",
    }

    def _warn_unknown(self, data: dict):
        for key in sorted(set(data) - self._KNOWN_KEYS, key=str):
            if not str(key).startswith("worker_"):
                logger.warning("%s: %s is not used by this homeserver; ignored", self.config_path, key)

    def client_base_url(self) -> str:
        if self.public_baseurl:
            return self.public_baseurl
        http = next(lst for lst in self.listeners if lst.type == "http")
        host = http.bind_addresses[0]
        if host in ("0.0.0.0", "::"):
            host = "localhost"
        elif ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{http.port}/"


def read_yaml(path: str, missing: str = "no such file") -> dict:
    """A config file's top-level mapping ({} for an empty file), or a ConfigError naming the file."""
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: {missing}") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read it: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text: {e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level: expected a mapping, got {type(data).__name__}")
    return data


def load_config(path: str) -> HomeServerConfig:
    return HomeServerConfig(path, read_yaml(path, "no such file (run `synctl generate --server-name NAME` to write one)"))
