"""`synctl generate`: a complete, commented homeserver.yaml and a signing key."""

import json
import os
import secrets

from hs.config import is_valid_server_name
from hs.events.signing import generate_signing_key, write_signing_keys

TEMPLATE = """\
# Homeserver configuration. Key names follow Synapse's where the meaning matches, so most of a
# Synapse homeserver.yaml carries over; keys this server does not use are logged and ignored.

# The domain in your users' IDs (@alice:{server_name}). It cannot be changed later.
server_name: {server_name_q}

# The URL clients use to reach this server, announced in /.well-known/matrix/client.
# Leave it out to announce the first http listener below.
#public_baseurl: https://matrix.{server_name}/

# Where this server keeps its embedded PostgreSQL, media and logs.
data_dir: {data_dir_q}
pid_file: {pid_file_q}
log_file: {log_file_q}
# A Python logging config (YAML, dictConfig format) replaces the default log set-up.
#log_config: /path/to/log.config
media_store_path: {media_q}
max_upload_size: 50M

# The server's ed25519 signing key. Keep it safe: other servers remember it.
signing_key_path: {signing_key_q}

listeners:
  # Clients over plain HTTP. Put a TLS-terminating proxy in front for anything but local use.
  # x_forwarded: true trusts X-Forwarded-For from that proxy.
  - port: {http_port}
    type: http
    bind_addresses: ["127.0.0.1"]
    x_forwarded: false
    resources:
      - names: [client, federation]
  # Other homeservers always connect over TLS (port 8448 unless .well-known says otherwise):
  # uncomment, with tls_certificate_path and tls_private_key_path below, to federate.
  #- port: 8448
  #  type: http
  #  tls: true
  #  bind_addresses: ["0.0.0.0"]
  #  resources:
  #    - names: [federation]

# The certificate (full chain) and key of the TLS listener, for the server name.
#tls_certificate_path: /etc/matrix/fullchain.pem
#tls_private_key_path: /etc/matrix/privkey.pem

# With no `database` section, the homeserver runs its own PostgreSQL inside data_dir.
# For production, point it at a PostgreSQL server (13 or newer):
#database:
#  name: psycopg2
#  args:
#    user: synapse
#    password: secret
#    database: homeserver
#    host: localhost
#    port: 5432
#    cp_max: 10

# Open registration on this server. Users register with a dummy stage only, so keep it off
# on a public address unless you also set registration_requires_token.
enable_registration: true
enable_registration_without_verification: true
#registration_requires_token: true

# Lets `register_new_matrix_user`-style scripts create accounts (admins among them).
registration_shared_secret: {shared_secret_q}

# Guests (kind=guest on /register) are refused unless this is on.
allow_guest_access: false

password_config:
  enabled: true
  #pepper: "a secret added to every password before hashing; never change it once set"
  #policy:
  #  enabled: true
  #  minimum_length: 10
  #  require_digit: true

# Refresh tokens are issued to clients that ask; their access tokens live this long.
refreshable_access_token_lifetime: 5m

# Rooms created without an explicit version use this one.
default_room_version: "12"

presence:
  enabled: true

# Rate limits (requests per second, and the burst allowed before limiting starts).
rc_message:
  per_second: 0.2
  burst_count: 10
rc_registration:
  per_second: 0.17
  burst_count: 3
rc_login:
  address:
    per_second: 0.17
    burst_count: 3
  account:
    per_second: 0.17
    burst_count: 3
  failed_attempts:
    per_second: 0.17
    burst_count: 3
"""


def generate(server_name: str, config_path: str, data_dir: str | None = None, http_port: int = 8008) -> None:
    """Write the config and, unless one exists, the signing key it names.

    Raises ValueError for a server name or port the config would refuse (before writing
    anything), FileExistsError if the config exists: it is never overwritten.
    """
    # The same checks load_config makes, so a generated config always loads.
    if not is_valid_server_name(server_name):
        raise ValueError(f"--server-name: expected a server name such as example.org or example.org:8448, "
                         f"got {server_name!r}")
    if isinstance(http_port, bool) or not isinstance(http_port, int) or not 0 < http_port < 65536:
        raise ValueError(f"--http-port: expected a port between 1 and 65535, got {http_port!r}")
    config_path = os.path.abspath(config_path)
    config_dir = os.path.dirname(config_path)
    data_dir = os.path.abspath(data_dir or os.path.join(config_dir, "data"))
    signing_key_path = os.path.join(config_dir, f"{server_name}.signing.key")
    if os.path.exists(config_path):
        raise FileExistsError(f"{config_path} already exists; not overwriting it")
    os.makedirs(config_dir, exist_ok=True)
    # The data directory holds the embedded PostgreSQL (superuser to whoever reaches its
    # socket), the media and the logs: the owner's only, where we create it.
    os.makedirs(data_dir, mode=0o700, exist_ok=True)
    # JSON strings are valid YAML double-quoted scalars, whatever characters a path holds.
    text = TEMPLATE.format(
        server_name=server_name, server_name_q=json.dumps(server_name), data_dir_q=json.dumps(data_dir),
        pid_file_q=json.dumps(os.path.join(data_dir, "homeserver.pid")),
        log_file_q=json.dumps(os.path.join(data_dir, "homeserver.log")),
        media_q=json.dumps(os.path.join(data_dir, "media_store")), signing_key_q=json.dumps(signing_key_path),
        http_port=http_port, shared_secret_q=json.dumps(secrets.token_urlsafe(32)))
    if not os.path.exists(signing_key_path):
        write_signing_keys(signing_key_path, [generate_signing_key()])
    # The file holds the shared secret: readable by its owner only.
    fd = os.open(config_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
