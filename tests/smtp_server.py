"""A real SMTP server for tests (aiosmtpd on loopback, in its own thread), keeping what it receives.

    with SmtpServer(auth=("user", "pass")) as smtp:
        ... config email.smtp_port = smtp.port ...
        msg = smtp.wait_for_message(lambda m: "alice@" in m["To"])
"""

import email
import email.policy
import os
import ssl
import subprocess
import threading
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from tests.harness import free_port


class _Handler:
    def __init__(self, server):
        self.server = server

    async def handle_DATA(self, smtp, session, envelope):
        msg = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        with self.server.lock:
            self.server.messages.append(msg)
            self.server.over_tls.append(session.ssl is not None)
        return "250 Message accepted for delivery"


class SmtpServer:
    def __init__(self, port: int | None = None, auth: tuple[str, str] | None = None, starttls_cert=None):
        """`starttls_cert`: (certfile, keyfile) to offer STARTTLS with, and require it."""
        self.port = port or free_port()
        self.auth = auth
        self.starttls_cert = starttls_cert
        self.messages = []
        self.over_tls = []  # per message: whether it came over STARTTLS
        self.failed_logins = 0
        self.lock = threading.Lock()
        self.controller = None

    def _authenticate(self, server, session, envelope, mechanism, auth_data):
        ok = self.auth is not None and (auth_data.login.decode(), auth_data.password.decode()) == self.auth
        if not ok:
            with self.lock:
                self.failed_logins += 1
        return AuthResult(success=ok, handled=False)

    def start(self) -> "SmtpServer":
        kwargs = {}
        if self.auth is not None:
            # Tests talk to it in the clear on loopback unless given a certificate: allow AUTH
            # without TLS then, and require AUTH.
            kwargs = {"authenticator": self._authenticate, "auth_require_tls": self.starttls_cert is not None,
                      "auth_required": True}
        if self.starttls_cert is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*self.starttls_cert)
            kwargs.update(tls_context=context, require_starttls=True)
        self.controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port, **kwargs)
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def received(self, match=lambda m: True) -> list:
        with self.lock:
            return [m for m in self.messages if match(m)]

    def wait_for_message(self, match=lambda m: True, timeout: float = 20.0, count: int = 1):
        """The `count`-th message that matches (the last of them), or AssertionError after `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.received(match)
            if len(found) >= count:
                return found[count - 1]
            time.sleep(0.05)
        raise AssertionError(f"no email #{count} matching within {timeout}s; got {len(self.messages)} emails")


def self_signed_cert(directory: str) -> tuple[str, str]:
    """(certfile, keyfile) of a new self-signed certificate for 127.0.0.1, made with openssl."""
    cert, key = os.path.join(directory, "smtp-cert.pem"), os.path.join(directory, "smtp-key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


def text_part(msg) -> str:
    return msg.get_body(preferencelist=("plain",)).get_content()


def html_part(msg) -> str:
    return msg.get_body(preferencelist=("html",)).get_content()
