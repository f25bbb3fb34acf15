"""Federation on loopback with real parts: a throw-away certificate authority, our homeserver with a
TLS federation listener, and a real Synapse from PyPI in its own virtualenv.

Server names carry the TLS federation port (`127.0.0.1:PORT`), so neither side looks up
.well-known or SRV: each dials https://127.0.0.1:PORT directly and verifies the peer's certificate
against the test CA (../shared/reference/synapse-federation-loopback.md has how and why).
"""

import datetime
import fcntl
import ipaddress
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid

import requests
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.harness import REPO, Client, HomeserverProcess, free_port, q

# The Synapse these tests were validated against; a new release is a deliberate change here.
SYNAPSE_REQUIREMENT = "matrix-synapse==1.163.2"
SYNAPSE_VENV = os.environ.get("HS_SYNAPSE_VENV") or os.path.join(REPO, ".synapse-venv")
SHARED_SECRET = "test-shared-secret"
# Retry a peer that was down after a second or so, not Synapse's default 10 minutes.
FAST_RETRIES = {"destination_min_retry_interval": "1s", "destination_max_retry_interval": "5s",
                "destination_retry_multiplier": 1.5}


class TestCA:
    """A certificate authority that lives as long as the test session, and the leaf certificates it
    signs for each server (valid for IP 127.0.0.1 and DNS localhost, so for both name styles)."""

    __test__ = False  # a helper, not a pytest test class

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="hs-test-ca-")
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"hs test CA {uuid.uuid4().hex[:8]}")])
        public = self.key.public_key()
        self.cert = (
            self._builder(name, public)
            .issuer_name(name)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(self.key, hashes.SHA256()))
        self.cert_path = os.path.join(self.dir, "ca.crt")
        with open(self.cert_path, "wb") as f:
            f.write(self.cert.public_bytes(serialization.Encoding.PEM))

    @staticmethod
    def _builder(subject: x509.Name, public_key) -> x509.CertificateBuilder:
        now = datetime.datetime.now(datetime.timezone.utc)
        return (x509.CertificateBuilder().subject_name(subject).public_key(public_key)
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(hours=1))
                .not_valid_after(now + datetime.timedelta(days=2)))

    def issue(self, directory: str, name: str = "tls") -> tuple[str, str]:
        """Writes DIR/NAME.crt and DIR/NAME.key (a leaf signed by this CA); returns their paths.
        The extensions are the ones strict verifiers (OpenSSL's X509_STRICT) insist on."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        cert = (
            self._builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]), key.public_key())
            .issuer_name(self.cert.subject)
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=True,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256()))
        cert_path, key_path = os.path.join(directory, f"{name}.crt"), os.path.join(directory, f"{name}.key")
        with open(cert_path, "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
        with open(key_path, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                      serialization.NoEncryption()))
        os.chmod(key_path, 0o600)
        return cert_path, key_path

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


class FederatingHomeserver(HomeserverProcess):
    """Our master with a plain-HTTP client listener on `port` and a TLS federation listener on
    `fed_port`, named `127.0.0.1:fed_port`, trusting only the test CA."""

    def __init__(self, db_dsn: str, ca: TestCA, **overrides):
        self.fed_port = free_port()
        super().__init__(db_dsn, server_name=f"127.0.0.1:{self.fed_port}")
        self.ca = ca
        cert_path, key_path = ca.issue(self.dir)
        self.config["listeners"] = [
            {"port": self.port, "type": "http", "bind_addresses": ["127.0.0.1"], "resources": [{"names": ["client"]}]},
            {"port": self.fed_port, "type": "http", "tls": True, "bind_addresses": ["127.0.0.1"],
             "resources": [{"names": ["federation"]}]},
        ]
        self.config.update({
            "tls_certificate_path": cert_path, "tls_private_key_path": key_path,
            "federation_ip_range_blacklist": [], "federation_custom_ca_list": [ca.cert_path],
            "trusted_key_servers": [], "suppress_key_server_warning": True,
            "federation": dict(FAST_RETRIES),
        })
        self.config.update(overrides)
        self.fed_url = f"https://127.0.0.1:{self.fed_port}"

    def start(self, timeout: float = 60.0) -> "FederatingHomeserver":
        super().start(timeout)
        # Peers reach us only over TLS: ready means our key is served there, under the test CA.
        return self.wait_until(lambda: requests.get(self.fed_url + "/_matrix/key/v2/server", timeout=2,
                                                    verify=self.ca.cert_path).status_code == 200, timeout)


def ensure_synapse_installed(venv: str = SYNAPSE_VENV) -> str:
    """The virtualenv's python, after installing SYNAPSE_REQUIREMENT into it unless already there.
    A lock file next to it makes a parallel run wait for the install instead of racing it."""
    python = os.path.join(venv, "bin", "python")
    marker = os.path.join(venv, "installed.txt")

    def installed() -> bool:
        try:
            with open(marker) as f:
                return f.read().strip() == SYNAPSE_REQUIREMENT and os.path.exists(python)
        except OSError:
            return False

    if installed():
        return python
    with open(venv.rstrip("/") + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if installed():
            return python
        started = time.monotonic()
        log_path = venv.rstrip("/") + "-install.log"
        # An existing virtualenv (one given in HS_SYNAPSE_VENV, or a broken-off install) is reused:
        # pip brings it to the pinned release.
        steps = [] if os.path.exists(python) else [[sys.executable, "-m", "venv", venv]]
        steps.append([python, "-m", "pip", "install", "-q", SYNAPSE_REQUIREMENT])
        with open(log_path, "w") as log:
            for cmd in steps:
                if subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, timeout=900).returncode != 0:
                    with open(log_path, errors="replace") as f:
                        tail = f.read()[-3000:]
                    raise RuntimeError(f"installing {SYNAPSE_REQUIREMENT} failed ({' '.join(cmd)}):\n{tail}")
        with open(marker, "w") as f:
            f.write(SYNAPSE_REQUIREMENT + "\n")
        print(f"installed {SYNAPSE_REQUIREMENT} into {venv} in {time.monotonic() - started:.1f}s", file=sys.stderr)
    return python


def _synapse_rate_limits() -> dict:
    """Every rc_* Synapse has, set so that no test is ever throttled."""
    free = {"per_second": 100000, "burst_count": 1000000}
    limits = {key: free for key in (
        "rc_message", "rc_registration", "rc_joins_per_room", "rc_room_creation", "rc_key_requests",
        "rc_admin_redaction", "rc_3pid_validation", "rc_third_party_invite", "rc_media_create",
        "rc_delayed_event_mgmt", "rc_reports", "rc_registration_token_validity")}
    limits.update({
        "rc_login": {"address": free, "account": free, "failed_attempts": free},
        "rc_joins": {"local": free, "remote": free},
        "rc_invites": {"per_room": free, "per_user": free, "per_issuer": free},
        "rc_presence": {"per_user": free},
        "rc_federation": {"window_size": 1000, "sleep_limit": 100000, "reject_limit": 100000,
                          "concurrent": 100000},
        "federation_rr_transactions_per_room_per_second": 100000,
    })
    return limits


class SynapseProcess:
    """A real Synapse (SQLite) on loopback: plain-HTTP client API on `port`, TLS federation on
    `fed_port`, server name `127.0.0.1:fed_port`. Started with --daemonize and stopped by the pid
    in its pid_file. `url()`/`server_name` make tests.harness.Client work against it."""

    def __init__(self, ca: TestCA, **overrides):
        self.ca = ca
        self.python = ensure_synapse_installed()
        self.dir = tempfile.mkdtemp(prefix="synapse-test-")
        self.port, self.fed_port = free_port(), free_port()
        self.server_name = f"127.0.0.1:{self.fed_port}"
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.fed_url = f"https://127.0.0.1:{self.fed_port}"
        self.config_path = os.path.join(self.dir, "homeserver.yaml")
        self.log_path = os.path.join(self.dir, "homeserver.log")
        self.pid_file = os.path.join(self.dir, "homeserver.pid")
        cert_path, key_path = ca.issue(self.dir)
        log_config = os.path.join(self.dir, "log.yaml")
        with open(log_config, "w") as f:
            yaml.safe_dump({
                "version": 1, "disable_existing_loggers": False,
                "formatters": {"precise": {"format": "%(asctime)s %(name)s %(levelname)s %(message)s"}},
                "handlers": {"file": {"class": "logging.FileHandler", "formatter": "precise",
                                      "filename": self.log_path, "encoding": "utf8"}},
                "root": {"level": "INFO", "handlers": ["file"]},
            }, f)
        self.config = {
            "server_name": self.server_name,
            "public_baseurl": self.base_url + "/",
            "pid_file": self.pid_file,
            "listeners": [
                {"port": self.port, "bind_addresses": ["127.0.0.1"], "type": "http", "tls": False,
                 "x_forwarded": False, "resources": [{"names": ["client"], "compress": False}]},
                # Peers always dial https: the federation listener must be TLS.
                {"port": self.fed_port, "bind_addresses": ["127.0.0.1"], "type": "http", "tls": True,
                 "resources": [{"names": ["federation", "keys"], "compress": False}]},
            ],
            "tls_certificate_path": cert_path, "tls_private_key_path": key_path,
            "database": {"name": "sqlite3", "args": {"database": os.path.join(self.dir, "homeserver.db")}},
            "log_config": log_config,
            "media_store_path": os.path.join(self.dir, "media_store"),
            "signing_key_path": os.path.join(self.dir, "signing.key"),
            "report_stats": False,
            "macaroon_secret_key": secrets.token_hex(16), "form_secret": secrets.token_hex(16),
            "registration_shared_secret": SHARED_SECRET,
            "enable_registration": True, "enable_registration_without_verification": True,
            "bcrypt_rounds": 4,  # registering users is most of a test's time at the default 12
            "federation_verify_certificates": True, "federation_custom_ca_list": [ca.cert_path],
            # The default list holds 127.0.0.0/8, and ip_range_whitelist does not lift it for IP literals.
            "federation_ip_range_blacklist": [],
            "trusted_key_servers": [], "suppress_key_server_warning": True,
            "federation": {**FAST_RETRIES, "client_timeout": "20s", "max_long_retry_delay": "5s",
                           "max_short_retry_delay": "1s", "max_long_retries": 3, "max_short_retries": 2},
            "presence": {"enabled": True},
            "url_preview_enabled": False, "enable_metrics": False,
            "allow_public_rooms_over_federation": True, "allow_profile_lookup_over_federation": True,
            **_synapse_rate_limits(),
        }
        self.config.update(overrides)
        self.pid = None

    def start(self, timeout: float = 60.0) -> "SynapseProcess":
        with open(self.config_path, "w") as f:
            yaml.safe_dump(self.config, f)
        launcher_log = os.path.join(self.dir, "launcher.log")
        try:
            with open(launcher_log, "w") as log:
                # The launcher returns once the daemon has forked; config or schema errors end it first.
                launched = subprocess.run([self.python, "-m", "synapse.app.homeserver", "-c", self.config_path,
                                           "--daemonize"], cwd=self.dir, stdout=log, stderr=subprocess.STDOUT,
                                          timeout=timeout)
            if launched.returncode != 0:
                raise RuntimeError(f"synapse exited with {launched.returncode}:\n{self._tails(launcher_log)}")
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                self.pid = self.pid or self._read_pid()
                if self.pid and not _alive(self.pid):
                    raise RuntimeError(f"synapse (pid {self.pid}) died:\n{self._tails(launcher_log)}")
                try:
                    if requests.get(self.url("/_matrix/client/versions"), timeout=1).status_code == 200:
                        return self
                except requests.ConnectionError:
                    pass
                time.sleep(0.1)
            raise RuntimeError(f"synapse did not answer in {timeout}s:\n{self._tails(launcher_log)}")
        except BaseException:
            self.stop()
            raise

    def _read_pid(self) -> int | None:
        try:
            with open(self.pid_file) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def _tails(self, launcher_log: str) -> str:
        parts = []
        for path in (launcher_log, self.log_path):
            try:
                with open(path, errors="replace") as f:
                    parts.append(f"--- {os.path.basename(path)}\n" + "".join(f.readlines()[-40:]))
            except OSError:
                pass
        return "\n".join(parts)

    def log_tail(self, lines: int = 40) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    def stop(self, keep_dir: bool = False) -> None:
        """SIGTERM to the pid in the pid_file, SIGKILL if it outlives the grace time; then the
        directory goes (unless kept to start again)."""
        pid = self.pid or self._read_pid()
        if pid is None:
            # A daemon that forked but had not written its pid yet: give it a moment to do so.
            deadline = time.monotonic() + 5
            while pid is None and time.monotonic() < deadline and os.path.exists(self.config_path):
                time.sleep(0.1)
                pid = self._read_pid()
        if pid is not None and _alive(pid):
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 15
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        self.pid = None
        if not keep_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def restart(self, **config_changes) -> "SynapseProcess":
        """Stops and starts again on the same directory (database, keys, ports), with these
        top-level config keys changed (None removes a key)."""
        self.stop(keep_dir=True)
        for key, value in config_changes.items():
            if value is None:
                self.config.pop(key, None)
            else:
                self.config[key] = value
        if os.path.exists(self.pid_file):
            os.remove(self.pid_file)  # start() must not take the old pid for the new daemon's
        return self.start()

    def url(self, path: str) -> str:
        return self.base_url + path


def _alive(pid: int) -> bool:
    """The daemon is not our child, so a zombie left for init to reap counts as gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


# --- What the interop tests do on either server (both speak the same client API).

def register(server, prefix: str = "u") -> Client:
    return Client(server).register(f"{prefix}{uuid.uuid4().hex[:10]}")


def ok(resp, status: int = 200) -> dict:
    assert resp.status_code == status, f"{resp.request.method} {resp.url}: {resp.status_code} {resp.text}"
    return resp.json()


def send_text(client: Client, room_id: str, body: str) -> str:
    path = f"/rooms/{q(room_id)}/send/m.room.message/{uuid.uuid4().hex}"
    return ok(client.put(path, {"msgtype": "m.text", "body": body}))["event_id"]


def join(client: Client, room_id_or_alias: str, via: list[str] = ()) -> str:
    """Joins by alias or by ID; `via` goes both as the legacy `server_name` and the v1.12 `via`
    query parameters, as a room ID alone names no server to ask."""
    params = [("server_name", s) for s in via] + [("via", s) for s in via]
    return ok(client.post(f"/join/{q(room_id_or_alias)}", {}, params=params))["room_id"]


class SyncWatcher:
    """Long-polls /sync for one client and waits, with a deadline, until a check holds for
    something the client was sent. Starts from an initial sync, so what arrived earlier counts."""

    FILTER = '{"room": {"timeline": {"limit": 100}}}'

    def __init__(self, client: Client):
        self.client = client
        self.since = None

    def next_batch(self, timeout_ms: int) -> dict:
        params = {"filter": self.FILTER, "timeout": str(timeout_ms if self.since else 0)}
        if self.since:
            params["since"] = self.since
        body = ok(self.client.get("/sync", params=params))
        self.since = body["next_batch"]
        return body

    def wait_for(self, check, what: str, timeout: float = 20.0):
        """The first truthy `check(sync_body)`; fails naming `what` when the time runs out."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{self.client.user_id} never saw {what} within {timeout}s")
            found = check(self.next_batch(int(min(left, 2.0) * 1000)))
            if found:
                return found

    def room_section(self, body: dict, room_id: str, membership: str = "join") -> dict:
        return body.get("rooms", {}).get(membership, {}).get(room_id, {})

    def wait_for_event(self, room_id: str, match, what: str, timeout: float = 20.0) -> dict:
        """The first timeline or state event in the joined room that `match(event)` accepts."""
        def check(body):
            section = self.room_section(body, room_id)
            events = section.get("state", {}).get("events", []) + section.get("timeline", {}).get("events", [])
            return next((e for e in events if match(e)), None)
        return self.wait_for(check, what, timeout)

    def wait_for_membership(self, room_id: str, user_id: str, membership: str, timeout: float = 20.0) -> dict:
        return self.wait_for_event(
            room_id, lambda e: (e.get("type") == "m.room.member" and e.get("state_key") == user_id
                                and e.get("content", {}).get("membership") == membership),
            f"{user_id}'s {membership} in {room_id}", timeout)

    def wait_for_message(self, room_id: str, body_text: str, timeout: float = 20.0) -> dict:
        return self.wait_for_event(
            room_id, lambda e: e.get("type") == "m.room.message" and e.get("content", {}).get("body") == body_text,
            f"the message {body_text!r} in {room_id}", timeout)

    def wait_for_ephemeral(self, room_id: str, match, what: str, timeout: float = 20.0) -> dict:
        def check(body):
            events = self.room_section(body, room_id).get("ephemeral", {}).get("events", [])
            return next((e for e in events if match(e)), None)
        return self.wait_for(check, what, timeout)

    def wait_for_invite(self, room_id: str, timeout: float = 20.0) -> dict:
        return self.wait_for(lambda body: self.room_section(body, room_id, "invite"),
                             f"an invite to {room_id}", timeout)


def create_room(client: Client, **body) -> str:
    return ok(client.post("/createRoom", body))["room_id"]


def public_room_with_alias(host_client: Client, host) -> tuple[str, str]:
    """A public room (history `shared`) and its alias `#local:host_server_name`."""
    local = f"fed{uuid.uuid4().hex[:10]}"
    room_id = create_room(host_client, preset="public_chat", room_alias_name=local)
    return room_id, f"#{local}:{host.server_name}"


class SharedRoom:
    """A public room on `host` that a user of `guest` joined by ID, each user with a SyncWatcher;
    returned once the host has seen the remote join."""

    def __init__(self, host, guest):
        self.host_user, self.guest_user = register(host, "h"), register(guest, "g")
        self.room_id = create_room(self.host_user, preset="public_chat")
        self.host_watch, self.guest_watch = SyncWatcher(self.host_user), SyncWatcher(self.guest_user)
        assert join(self.guest_user, self.room_id, via=[host.server_name]) == self.room_id
        self.host_watch.wait_for_membership(self.room_id, self.guest_user.user_id, "join")


def paginate_back(client: Client, room_id: str, limit: int = 20, max_pages: int = 20) -> list[dict]:
    """Every event /messages dir=b gives from the end of the room's timeline, newest first."""
    events, token = [], None
    for _ in range(max_pages):
        params = {"dir": "b", "limit": str(limit)}
        if token:
            params["from"] = token
        page = ok(client.get(f"/rooms/{q(room_id)}/messages", params=params))
        events.extend(page["chunk"])
        if not page["chunk"] or "end" not in page:
            break
        token = page["end"]
    return events
