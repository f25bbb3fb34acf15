"""Email notifications (client-server "Push Notifications", pushers of kind `email`): a real
homeserver over HTTP mailing a real SMTP server (aiosmtpd) on loopback.

The delay before a mail is `email.notif_delay_before_mail` (Synapse's 10 minutes), shortened
here to DELAY seconds."""

import re
import time
import uuid
from urllib.parse import urljoin

import pytest
import requests

from hs.config import EmailConfig
from hs.push.mailer import Mailer, MailError
from tests.api.test_pushers import pusher_body, pushers, set_pusher
from tests.api.test_sync import assert_error, send, set_state
from tests.api.test_threepids_email import bind_email
from tests.harness import create, new_user, q, query, running_homeserver
from tests.smtp_server import SmtpServer, html_part, self_signed_cert, text_part

DELAY = 1.5
SMTP_AUTH = ("hs-mailer", "smtp secret")


@pytest.fixture(scope="module")
def smtp():
    with SmtpServer(auth=SMTP_AUTH) as server:
        yield server


@pytest.fixture(scope="module")
def mail_server(db_dsn, smtp):
    email = {"smtp_host": "127.0.0.1", "smtp_port": smtp.port, "smtp_user": SMTP_AUTH[0], "smtp_pass": SMTP_AUTH[1],
             "enable_tls": False, "notif_from": "Test HS <noreply@test.local>", "app_name": "TestHS",
             "enable_notifs": True, "notif_delay_before_mail": int(DELAY * 1000),
             "client_base_url": "https://app.example.org"}
    with running_homeserver(db_dsn, email=email) as server:
        yield server


def email_pusher(address: str) -> dict:
    return pusher_body(kind="email", app_id="m.email", pushkey=address, data={})


def subscribe(user, smtp, db_dsn) -> str:
    """Binds an address to `user` and sets an email pusher for it; returns the address once the
    pusher has started (it mails only what comes after)."""
    address = f"{user.user_id[1:].split(':')[0]}@example.org"
    bind_email(user, smtp, address)
    set_pusher(user, email_pusher(address))
    deadline = time.monotonic() + 10
    while not query(db_dsn, "SELECT 1 FROM email_pusher_state WHERE user_id = %s", (user.user_id,)):
        assert time.monotonic() < deadline, "the email pusher did not start"
        time.sleep(0.05)
    return address


def shared_room(alice, name="Garden Club", sender_name="Bob Builder"):
    """A room named `name` that alice shares with a new user called `sender_name`; (room_id, bob)."""
    bob = new_user(alice.server, "eb")
    assert bob.put(f"/profile/{q(bob.user_id)}/displayname", {"displayname": sender_name}).status_code == 200
    room_id = create(bob, invite=[alice.user_id], name=name)
    assert alice.post(f"/rooms/{q(room_id)}/join", {}).status_code == 200
    return room_id, bob


def notifications_to(smtp, address):
    return smtp.received(lambda m: m["To"] == address and "unread" in m["Subject"])


def test_unread_message_is_mailed_after_the_delay_naming_room_sender_and_body(mail_server, smtp, db_dsn):
    alice = new_user(mail_server, "em")
    room_id, bob = shared_room(alice)
    address = subscribe(alice, smtp, db_dsn)
    sent_at = time.monotonic()
    send(bob, room_id, "Tomatoes <b>ripe</b> & ready")
    msg = smtp.wait_for_message(lambda m: m["To"] == address and "unread" in m["Subject"])
    assert time.monotonic() - sent_at >= DELAY - 0.2
    assert msg["Subject"] == "[TestHS] 1 unread message in Garden Club"
    assert msg["From"] == "Test HS <noreply@test.local>"
    text = text_part(msg)
    assert "Garden Club" in text
    assert "Bob Builder: Tomatoes <b>ripe</b> & ready" in text
    html = html_part(msg)
    assert "Tomatoes &lt;b&gt;ripe&lt;/b&gt; &amp; ready" in html
    assert "<b>ripe</b>" not in html
    assert "https://app.example.org/#/room/" in html
    unsubscribe = msg["List-Unsubscribe"].strip("<>")
    assert unsubscribe.startswith(mail_server.base_url + "/_synapse/client/email/unsubscribe?token=")
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert unsubscribe in text
    assert "access_token" not in unsubscribe
    time.sleep(DELAY + 0.5)
    assert len(notifications_to(smtp, address)) == 1


def test_encrypted_message_is_named_but_its_content_never_mailed(mail_server, smtp, db_dsn):
    alice = new_user(mail_server, "em")
    room_id, bob = shared_room(alice, name="Secret Garden")
    address = subscribe(alice, smtp, db_dsn)
    set_state(bob, room_id, "m.room.encryption", {"algorithm": "m.megolm.v1.aes-sha2"})
    send(bob, room_id, {"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "CIPHERTEXTNOTFORMAIL",
                        "sender_key": "KEY", "device_id": "DEV", "session_id": "SESSION",
                        "body": "PLAINTEXTNOTFORMAIL"}, "m.room.encrypted")
    msg = smtp.wait_for_message(lambda m: m["To"] == address and "unread" in m["Subject"])
    raw = msg.as_string()
    assert "Bob Builder: an encrypted message" in text_part(msg)
    assert "CIPHERTEXTNOTFORMAIL" not in raw and "PLAINTEXTNOTFORMAIL" not in raw


def test_message_read_before_the_delay_is_not_mailed(mail_server, smtp, db_dsn):
    alice = new_user(mail_server, "em")
    room_id, bob = shared_room(alice)
    address = subscribe(alice, smtp, db_dsn)
    event_id = send(bob, room_id, "read me quickly")
    resp = alice.post(f"/rooms/{q(room_id)}/receipt/m.read/{q(event_id)}", {})
    assert resp.status_code == 200, resp.text
    time.sleep(DELAY + 1.5)
    assert notifications_to(smtp, address) == []
    # The pusher moved past it: a later message is mailed alone.
    send(bob, room_id, "a later one")
    msg = smtp.wait_for_message(lambda m: m["To"] == address and "unread" in m["Subject"])
    assert "read me quickly" not in text_part(msg)
    assert "a later one" in text_part(msg)


def test_notifications_of_several_rooms_are_grouped_per_room_in_one_email(mail_server, smtp, db_dsn):
    alice = new_user(mail_server, "em")
    garden, bob = shared_room(alice, name="Garden Club")
    kitchen, carol = shared_room(alice, name="Kitchen", sender_name="Carol Cook")
    address = subscribe(alice, smtp, db_dsn)
    send(bob, garden, "weeds everywhere")
    send(carol, kitchen, "soup is on")
    send(bob, garden, "bring gloves")
    msg = smtp.wait_for_message(lambda m: m["To"] == address and "unread" in m["Subject"])
    assert msg["Subject"] == "[TestHS] 3 unread messages in 2 rooms"
    text = text_part(msg)
    garden_part, kitchen_part = text.index("Garden Club:"), text.index("Kitchen:")
    assert garden_part < text.index("Bob Builder: weeds everywhere") < text.index("Bob Builder: bring gloves") \
        < kitchen_part < text.index("Carol Cook: soup is on")


def test_bursts_in_a_room_left_unread_are_throttled_and_reading_resets_the_throttle(mail_server, smtp, db_dsn):
    alice = new_user(mail_server, "em")
    room_id, bob = shared_room(alice)
    address = subscribe(alice, smtp, db_dsn)

    def burst_and_wait(body, count):
        sent = time.monotonic()
        event_id = send(bob, room_id, body)
        smtp.wait_for_message(lambda m: m["To"] == address and "unread" in m["Subject"], count=count, timeout=30)
        return time.monotonic() - sent, event_id

    burst_and_wait("one", 1)  # the room's throttle is now DELAY
    burst_and_wait("two", 2)  # still unread: it doubles to 2 * DELAY
    waited, event_id = burst_and_wait("three", 3)
    assert waited >= 2 * DELAY - 0.2, waited
    # The third email names what is new since the second.
    third = notifications_to(smtp, address)[2]
    assert "three" in text_part(third) and "two" not in text_part(third)
    # Reading the room starts it over: the next email comes after the plain delay.
    assert alice.post(f"/rooms/{q(room_id)}/receipt/m.read/{q(event_id)}", {}).status_code == 200
    time.sleep(0.5)
    waited, _ = burst_and_wait("four", 4)
    assert waited < 2 * DELAY, waited


def test_unsubscribe_link_removes_the_pusher(mail_server, smtp, db_dsn):
    alice = new_user(mail_server, "em")
    room_id, bob = shared_room(alice)
    address = subscribe(alice, smtp, db_dsn)
    send(bob, room_id, "hello")
    msg = smtp.wait_for_message(lambda m: m["To"] == address and "unread" in m["Subject"])
    link = msg["List-Unsubscribe"].strip("<>")
    assert pushers(alice) != []
    # Opening the link (as a mail scanner would) only asks; the page's form unsubscribes.
    page = requests.get(link, timeout=10)
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert pushers(alice) != []
    action = re.search(r'<form method="post" action="([^"]+)"', page.text).group(1)
    assert requests.post(urljoin(link, action), timeout=10).status_code == 200
    assert pushers(alice) == []
    send(bob, room_id, "anyone there?")
    time.sleep(DELAY + 1.5)
    assert len(notifications_to(smtp, address)) == 1


def test_one_click_unsubscribe_post_removes_the_pusher(mail_server, smtp, db_dsn):
    alice = new_user(mail_server, "em")
    room_id, bob = shared_room(alice)
    address = subscribe(alice, smtp, db_dsn)
    send(bob, room_id, "hello")
    msg = smtp.wait_for_message(lambda m: m["To"] == address and "unread" in m["Subject"])
    link = msg["List-Unsubscribe"].strip("<>")
    # RFC 8058: the mail client POSTs List-Unsubscribe=One-Click to the link.
    assert requests.post(link, data="List-Unsubscribe=One-Click", timeout=10).status_code == 200
    assert pushers(alice) == []


def test_unknown_unsubscribe_token_is_404_and_removes_nothing(mail_server, smtp, db_dsn):
    alice = new_user(mail_server, "em")
    subscribe(alice, smtp, db_dsn)
    page = requests.get(mail_server.url("/_synapse/client/email/unsubscribe"), params={"token": uuid.uuid4().hex},
                        timeout=10)
    assert page.status_code == 404
    assert len(pushers(alice)) == 1


def test_unbinding_the_address_removes_its_email_pusher(mail_server, smtp, db_dsn):
    alice = new_user(mail_server, "em")
    address = subscribe(alice, smtp, db_dsn)
    assert alice.post("/account/3pid/delete", {"medium": "email", "address": address}).status_code == 200
    assert pushers(alice) == []
    assert_error(alice.post("/pushers/set", email_pusher(address)), 400, "M_THREEPID_NOT_FOUND")


def test_email_pusher_for_another_users_address_is_threepid_not_found(mail_server, smtp, db_dsn):
    address = subscribe(new_user(mail_server, "em"), smtp, db_dsn)
    mallory = new_user(mail_server, "em")
    assert_error(mallory.post("/pushers/set", email_pusher(address)), 400, "M_THREEPID_NOT_FOUND")


def test_smtp_down_is_logged_and_retried_and_the_server_stays_healthy(mail_server, smtp, db_dsn):
    alice = new_user(mail_server, "em")
    room_id, bob = shared_room(alice)
    address = subscribe(alice, smtp, db_dsn)
    smtp.stop()
    try:
        send(bob, room_id, "while the mail server was down")
        time.sleep(DELAY + 1.5)
        assert requests.get(mail_server.url("/_matrix/client/versions"), timeout=5).status_code == 200
        with open(mail_server.log_path) as f:
            assert "not sent" in f.read()
    finally:
        smtp.start()
    msg = smtp.wait_for_message(lambda m: m["To"] == address and "unread" in m["Subject"], timeout=30)
    assert "while the mail server was down" in text_part(msg)
    assert len(notifications_to(smtp, address)) == 1


def test_bad_smtp_credentials_are_logged_and_retried(mail_server, smtp, db_dsn):
    alice = new_user(mail_server, "em")
    room_id, bob = shared_room(alice)
    address = subscribe(alice, smtp, db_dsn)
    smtp.auth = ("hs-mailer", "another password")
    failed_before = smtp.failed_logins
    try:
        send(bob, room_id, "sent with the wrong password")
        deadline = time.monotonic() + DELAY + 10
        while smtp.failed_logins == failed_before:
            assert time.monotonic() < deadline, "the homeserver never tried to log in"
            time.sleep(0.1)
        assert notifications_to(smtp, address) == []
        assert requests.get(mail_server.url("/_matrix/client/versions"), timeout=5).status_code == 200
    finally:
        smtp.auth = SMTP_AUTH
    msg = smtp.wait_for_message(lambda m: m["To"] == address and "unread" in m["Subject"], timeout=30)
    assert "sent with the wrong password" in text_part(msg)


def test_restart_neither_resends_nor_skips(mail_server, smtp, db_dsn):
    alice = new_user(mail_server, "em")
    room_id, bob = shared_room(alice)
    address = subscribe(alice, smtp, db_dsn)
    send(bob, room_id, "before the restart")
    smtp.wait_for_message(lambda m: m["To"] == address and "unread" in m["Subject"])
    mail_server.stop_process()
    mail_server.start()
    send(bob, room_id, "after the restart")
    second = smtp.wait_for_message(lambda m: m["To"] == address and "unread" in m["Subject"], count=2, timeout=30)
    assert "after the restart" in text_part(second)
    assert "before the restart" not in text_part(second)
    time.sleep(DELAY + 0.5)
    assert len(notifications_to(smtp, address)) == 2


def test_email_config_errors_name_the_key(db_dsn):
    with pytest.raises(RuntimeError, match="email.notif_from"):
        with running_homeserver(db_dsn, email={"enable_notifs": True}):
            pass


# --- the mailer's transport security, against a STARTTLS server with a self-signed certificate ---

def mail_config(smtp, **overrides) -> EmailConfig:
    values = {"enabled": True, "notif_from": "Test HS <noreply@test.local>", "smtp_host": "127.0.0.1",
              "smtp_port": smtp.port, "smtp_user": SMTP_AUTH[0], "smtp_pass": SMTP_AUTH[1], "force_tls": False,
              "require_transport_security": True, "enable_tls": True, "app_name": "TestHS", "enable_notifs": True,
              "client_base_url": "https://matrix.to", "validation_token_lifetime_ms": 3_600_000,
              "notif_delay_before_mail_ms": 1000}
    values.update(overrides)
    return EmailConfig(**values)


@pytest.fixture(scope="module")
def tls_cert(tmp_path_factory):
    return self_signed_cert(str(tmp_path_factory.mktemp("smtp-tls")))


def test_mailer_upgrades_with_starttls_before_logging_in(tls_cert, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", tls_cert[0])  # trust the test certificate
    with SmtpServer(auth=SMTP_AUTH, starttls_cert=tls_cert) as server:
        Mailer(mail_config(server)).send("a@example.org", "Hello", "text", "<p>html</p>")
        msg = server.wait_for_message()
        assert server.over_tls == [True]
        assert msg["Subject"] == "Hello"
        assert text_part(msg).strip() == "text"


def test_mailer_refuses_an_untrusted_certificate(tls_cert):
    with SmtpServer(auth=SMTP_AUTH, starttls_cert=tls_cert) as server:
        with pytest.raises(MailError, match="CERTIFICATE_VERIFY_FAILED"):
            Mailer(mail_config(server)).send("a@example.org", "Hello", "text", "<p>html</p>")
        assert server.received() == []


def test_require_transport_security_refuses_a_server_without_starttls():
    with SmtpServer(auth=SMTP_AUTH) as server:
        with pytest.raises(MailError, match="STARTTLS"):
            Mailer(mail_config(server)).send("a@example.org", "Hello", "text", "<p>html</p>")
        assert server.received() == []
        assert server.failed_logins == 0  # the password never went out in the clear


def test_a_deleted_email_pusher_leaves_no_state_and_set_again_starts_afresh(mail_server, smtp, db_dsn):
    alice = new_user(mail_server, "em")
    address = subscribe(alice, smtp, db_dsn)

    def state():
        return query(db_dsn, "SELECT unsubscribe_token FROM email_pusher_state WHERE user_id = %s", (alice.user_id,))
    [(old_token,)] = state()
    removal = pusher_body(kind=None, app_id="m.email", pushkey=address)
    assert alice.post("/pushers/set", removal).status_code == 200
    deadline = time.monotonic() + 10
    while state() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert state() == []
    set_pusher(alice, email_pusher(address))
    deadline = time.monotonic() + 10
    while not state() and time.monotonic() < deadline:
        time.sleep(0.1)
    [(new_token,)] = state()
    assert new_token != old_token
    old_link = requests.get(mail_server.url("/_synapse/client/email/unsubscribe"), params={"token": old_token},
                            timeout=10)
    assert old_link.status_code == 404
