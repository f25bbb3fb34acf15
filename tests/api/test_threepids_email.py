"""Email 3PIDs (client-server "Adding Account Administrative Contact Information",
administrative_contact.yaml): requestToken mails a link, following it validates the session,
/account/3pid/add binds the address (with UIA), GET /account/3pid lists it, /account/3pid/delete
unbinds it. A real SMTP server (aiosmtpd) receives the emails."""

import re
import uuid
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from tests.api.test_devices import password_auth, start_uia
from tests.api.test_sync import assert_error
from tests.harness import Client, new_user, running_homeserver
from tests.smtp_server import SmtpServer, html_part, text_part

REQUEST_TOKEN = "/account/3pid/email/requestToken"
SUBMIT_PATH = "/_matrix/client/unstable/add_threepid/email/submit_token"


@pytest.fixture(scope="module")
def smtp():
    with SmtpServer() as server:
        yield server


@pytest.fixture(scope="module")
def mail_server(db_dsn, smtp):
    """A homeserver that validates email addresses through `smtp`."""
    email = {"smtp_host": "127.0.0.1", "smtp_port": smtp.port, "notif_from": "Test HS <noreply@test.local>",
             "app_name": "TestHS", "enable_tls": False}
    with running_homeserver(db_dsn, email=email,
                            rc_3pid_validation={"per_second": 0.001, "burst_count": 3}) as server:
        yield server


def new_address() -> str:
    return f"user-{uuid.uuid4().hex[:10]}@Example.ORG"


def request_token(client, address, secret=None, send_attempt=1, **extra):
    body = {"client_secret": secret or uuid.uuid4().hex, "email": address, "send_attempt": send_attempt, **extra}
    return client.post(REQUEST_TOKEN, body), body["client_secret"]


def validation_link(smtp, address, count=1) -> str:
    msg = smtp.wait_for_message(lambda m: m["To"] == address.lower(), count=count)
    match = re.search(r"(http://\S+submit_token\?\S+)", text_part(msg))
    assert match, text_part(msg)
    return match.group(1)


def add_threepid(client, sid, secret):
    body = {"sid": sid, "client_secret": secret}
    session = start_uia(client, "POST", "/account/3pid/add", body)
    return client.post("/account/3pid/add", {**body, "auth": password_auth(session, client.user_id)})


def bind_email(client, smtp, address) -> None:
    """Binds `address` to the client's account the way a user does: link from the email, then add."""
    resp, secret = request_token(client, address)
    assert resp.status_code == 200, resp.text
    link = validation_link(smtp, address)
    assert requests.get(link, timeout=10, allow_redirects=False).status_code == 200
    resp = add_threepid(client, resp.json()["sid"], secret)
    assert resp.status_code == 200, resp.text


def threepids(client) -> list[dict]:
    resp = client.get("/account/3pid")
    assert resp.status_code == 200, resp.text
    return resp.json()["threepids"]


def test_request_token_without_email_configured_is_medium_not_supported(homeserver):
    resp, _ = request_token(new_user(homeserver, "te"), new_address())
    assert_error(resp, 400, "M_THREEPID_MEDIUM_NOT_SUPPORTED")


def test_capabilities_offer_3pid_changes_only_with_email_configured(homeserver, mail_server):
    for server, enabled in ((homeserver, False), (mail_server, True)):
        caps = new_user(server).get("/capabilities").json()["capabilities"]
        assert caps["m.3pid_changes"] == {"enabled": enabled}


def test_address_is_bound_by_following_the_emailed_link_then_adding_it(mail_server, smtp):
    alice = new_user(mail_server, "te")
    address = new_address()
    resp, secret = request_token(alice, address)
    assert resp.status_code == 200, resp.text
    sid = resp.json()["sid"]
    assert resp.json()["submit_url"] == mail_server.base_url + SUBMIT_PATH
    msg = smtp.wait_for_message(lambda m: m["To"] == address.lower())
    assert msg["From"] == "Test HS <noreply@test.local>"
    assert "TestHS" in msg["Subject"]
    link = validation_link(smtp, address)
    assert link in html_part(msg).replace("&amp;", "&")
    assert parse_qs(urlsplit(link).query)["sid"] == [sid]
    # Not validated yet: adding fails.
    assert_error(add_threepid(alice, sid, secret), 400, "M_THREEPID_AUTH_FAILED")
    page = requests.get(link, timeout=10, allow_redirects=False)
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    resp = add_threepid(alice, sid, secret)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {}
    [bound] = threepids(alice)
    assert bound["medium"] == "email"
    assert bound["address"] == address.lower()
    assert isinstance(bound["validated_at"], int) and isinstance(bound["added_at"], int)


def test_add_needs_user_interactive_auth(mail_server, smtp):
    alice = new_user(mail_server, "te")
    resp = alice.post("/account/3pid/add", {"sid": "x", "client_secret": "y"})
    assert resp.status_code == 401
    assert resp.json()["flows"] == [{"stages": ["m.login.password"]}]


def test_threepid_endpoints_need_an_access_token(mail_server):
    anonymous = Client(mail_server)
    for method, path in (("GET", "/account/3pid"), ("POST", "/account/3pid/add"), ("POST", "/account/3pid/delete"),
                         ("POST", REQUEST_TOKEN)):
        assert_error(anonymous.request(method, path, json={}), 401, "M_MISSING_TOKEN")


def test_a_wrong_token_does_not_validate(mail_server, smtp):
    alice = new_user(mail_server, "te")
    address = new_address()
    resp, secret = request_token(alice, address)
    sid = resp.json()["sid"]
    validation_link(smtp, address)
    page = requests.get(mail_server.url(SUBMIT_PATH), params={"sid": sid, "client_secret": secret, "token": "nope"},
                        timeout=10)
    assert page.status_code == 400
    resp = requests.post(mail_server.url(SUBMIT_PATH), json={"sid": sid, "client_secret": secret, "token": "nope"},
                         timeout=10)
    assert_error(resp, 400, "M_THREEPID_AUTH_FAILED")
    assert_error(add_threepid(alice, sid, secret), 400, "M_THREEPID_AUTH_FAILED")


def test_submit_url_validates_with_the_token_from_the_email(mail_server, smtp):
    alice = new_user(mail_server, "te")
    address = new_address()
    resp, secret = request_token(alice, address)
    params = parse_qs(urlsplit(validation_link(smtp, address)).query)
    resp = requests.post(resp.json()["submit_url"], timeout=10,
                         json={"sid": params["sid"][0], "client_secret": secret, "token": params["token"][0]})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"success": True}
    assert add_threepid(alice, params["sid"][0], secret).status_code == 200


def test_link_redirects_to_next_link(mail_server, smtp):
    alice = new_user(mail_server, "te")
    address = new_address()
    request_token(alice, address, next_link="https://app.example.org/done")
    page = requests.get(validation_link(smtp, address), timeout=10, allow_redirects=False)
    assert page.status_code == 302
    assert page.headers["Location"] == "https://app.example.org/done"


def test_same_send_attempt_sends_no_second_email_a_higher_one_does(mail_server, smtp):
    alice = new_user(mail_server, "te")
    address = new_address()
    first, secret = request_token(alice, address)
    again, _ = request_token(alice, address, secret=secret)
    assert again.status_code == 200
    assert again.json()["sid"] == first.json()["sid"]
    validation_link(smtp, address)
    third, _ = request_token(alice, address, secret=secret, send_attempt=2)
    assert third.json()["sid"] == first.json()["sid"]
    second_link = validation_link(smtp, address, count=2)
    assert len(smtp.received(lambda m: m["To"] == address.lower())) == 2
    # The newest link is the one that works.
    assert requests.get(second_link, timeout=10, allow_redirects=False).status_code == 200


def test_address_bound_to_another_account_is_in_use(mail_server, smtp):
    alice, bob = new_user(mail_server, "te"), new_user(mail_server, "te")
    address = new_address()
    bind_email(alice, smtp, address)
    resp, _ = request_token(bob, address.upper())
    assert_error(resp, 400, "M_THREEPID_IN_USE")


@pytest.mark.parametrize("body,errcode", [
    ({"client_secret": "abc", "email": "not-an-address", "send_attempt": 1}, "M_INVALID_PARAM"),
    ({"client_secret": "bad secret!", "email": "a@example.org", "send_attempt": 1}, "M_INVALID_PARAM"),
    ({"client_secret": "abc", "email": "a@example.org", "send_attempt": 1, "next_link": "javascript:x"},
     "M_INVALID_PARAM"),
    ({"client_secret": "abc", "email": "a@example.org", "send_attempt": "1"}, "M_BAD_JSON"),
    ({"client_secret": "abc", "send_attempt": 1}, "M_MISSING_PARAM"),
])
def test_bad_request_token_input_gets_the_spec_error(mail_server, body, errcode):
    assert_error(new_user(mail_server, "te").post(REQUEST_TOKEN, body), 400, errcode)


def test_requests_for_one_address_are_rate_limited(mail_server, smtp):
    alice = new_user(mail_server, "te")
    address = new_address()
    for _ in range(3):
        assert request_token(alice, address)[0].status_code == 200
    resp, _ = request_token(alice, address)
    assert_error(resp, 429, "M_LIMIT_EXCEEDED")
    assert resp.json()["retry_after_ms"] > 0


def test_delete_unbinds_the_address(mail_server, smtp):
    alice = new_user(mail_server, "te")
    address = new_address()
    bind_email(alice, smtp, address)
    resp = alice.post("/account/3pid/delete", {"medium": "email", "address": address})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"id_server_unbind_result": "no-support"}
    assert threepids(alice) == []
    # Free again for anyone.
    assert request_token(new_user(mail_server, "te"), address)[0].status_code == 200


def test_delete_without_address_is_missing_param(mail_server):
    assert_error(new_user(mail_server, "te").post("/account/3pid/delete", {"medium": "email"}), 400,
                 "M_MISSING_PARAM")


def test_deactivation_frees_the_address(mail_server, smtp):
    alice = new_user(mail_server, "te")
    address = new_address()
    bind_email(alice, smtp, address)
    session = start_uia(alice, "POST", "/account/deactivate")
    resp = alice.post("/account/deactivate", {"auth": password_auth(session, alice.user_id)})
    assert resp.status_code == 200, resp.text
    assert request_token(new_user(mail_server, "te"), address)[0].status_code == 200
