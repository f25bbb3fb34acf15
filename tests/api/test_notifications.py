"""GET /notifications (client-server API "Listing Notifications"): the events the user's push
rules notified them of, newest first, with `from`/`limit` paging, `only=highlight` and `read`."""

from tests.api.test_receipts import receipt
from tests.api.test_response_schemas import assert_matches_spec
from tests.api.test_sync import assert_error, create, new_user, post, q, send
from tests.api.test_unread_counts import me, send_content
from tests.harness import Client

PATH = "/_matrix/client/v3/notifications"


def one_to_one(homeserver):
    alice, bob = new_user(homeserver, "nt"), new_user(homeserver, "nt")
    room_id = create(alice, preset="public_chat")
    post(bob, f"/join/{q(room_id)}")
    return alice, bob, room_id


def notifications(client, **params) -> dict:
    resp = client.get("/notifications", params=params)
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_notifications_list_the_events_newest_first_with_their_actions(homeserver):
    alice, bob, room_id = one_to_one(homeserver)
    first = send(alice, room_id, "first")
    second = send(alice, room_id, "second")
    resp = bob.get("/notifications")
    assert resp.status_code == 200, resp.text
    assert_matches_spec(resp, PATH)
    body = resp.json()
    assert "next_token" not in body
    items = body["notifications"]
    assert [n["event"]["event_id"] for n in items] == [second, first]
    top = items[0]
    assert top["room_id"] == room_id
    assert top["actions"] == ["notify", {"set_tweak": "sound", "value": "default"}]
    assert top["read"] is False
    assert top["event"]["content"] == {"msgtype": "m.text", "body": "second"}
    assert top["event"]["sender"] == me(alice)
    assert top["ts"] == top["event"]["origin_server_ts"]
    assert notifications(alice)["notifications"] == []


def test_only_highlight_lists_highlights(homeserver):
    alice, bob, room_id = one_to_one(homeserver)
    mention = send_content(alice, room_id, {"msgtype": "m.text", "body": "you", "m.mentions": {"user_ids": [me(bob)]}})
    send(alice, room_id, "plain")
    items = notifications(bob, only="highlight")["notifications"]
    assert [n["event"]["event_id"] for n in items] == [mention]
    assert {"set_tweak": "highlight"} in items[0]["actions"]
    assert len(notifications(bob)["notifications"]) == 2


def test_pages_follow_next_token_to_the_end(homeserver):
    alice, bob, room_id = one_to_one(homeserver)
    sent = [send(alice, room_id, f"m{i}") for i in range(5)]
    seen, token, pages = [], None, 0
    while True:
        params = {"limit": 2} if token is None else {"limit": 2, "from": token}
        body = notifications(bob, **params)
        pages += 1
        assert len(body["notifications"]) <= 2
        seen += [n["event"]["event_id"] for n in body["notifications"]]
        token = body.get("next_token")
        if token is None:
            break
    assert seen == sent[::-1]
    assert pages == 3


def test_read_flag_follows_the_users_receipt(homeserver):
    alice, bob, room_id = one_to_one(homeserver)
    old = send(alice, room_id, "old")
    new = send(alice, room_id, "new")
    assert receipt(bob, room_id, "m.read", old).status_code == 200
    read = {n["event"]["event_id"]: n["read"] for n in notifications(bob)["notifications"]}
    assert read == {old: True, new: False}


def test_notifications_stay_after_leaving_the_room(homeserver):
    # As Synapse: the list is of what notified the user, whatever their membership now.
    alice, bob, room_id = one_to_one(homeserver)
    event_id = send(alice, room_id, "before leaving")
    post(bob, f"/rooms/{q(room_id)}/leave")
    assert [n["event"]["event_id"] for n in notifications(bob)["notifications"]] == [event_id]


def test_bad_parameters_are_rejected(homeserver):
    bob = new_user(homeserver, "nt")
    assert_error(bob.get("/notifications", params={"limit": "x"}), 400, "M_INVALID_PARAM")
    assert_error(bob.get("/notifications", params={"limit": "0"}), 400, "M_INVALID_PARAM")
    assert_error(bob.get("/notifications", params={"from": "nope"}), 400, "M_INVALID_PARAM")


def test_notifications_need_an_access_token(homeserver):
    assert_error(Client(homeserver).get("/notifications"), 401, "M_MISSING_TOKEN")
