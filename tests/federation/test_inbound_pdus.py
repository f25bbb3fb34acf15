"""Inbound federation against bad input (issue 10, "Bad input"): a peer played by the test signs
and sends what a broken or hostile server would, to our real homeserver over TLS. Each bad PDU is
refused or skipped, nothing unverified is stored as accepted, and good PDUs still go through."""

import uuid

import pytest

from hs.events.signing import generate_signing_key
from tests.federation.fake_peer import tampered
from tests.federation_fixture import SyncWatcher, create_room, ok, register
from tests.harness import assert_error, q


@pytest.fixture
def room(ours, peer):
    """A public room on our server with a user of the peer joined: (our user, room_id, version,
    the peer's user, the peer's join)."""
    local = register(ours, "o")
    room_id = create_room(local, preset="public_chat")
    localpart = "p" + uuid.uuid4().hex[:8]
    version, join, answer = peer.join(ours, room_id, localpart)
    assert any(e["type"] == "m.room.create" for e in answer["state"])
    SyncWatcher(local).wait_for_membership(room_id, peer.user(localpart), "join")
    return local, room_id, version, peer.user(localpart), join


def _seen(local, room_id, event_id) -> int:
    return local.get(f"/rooms/{q(room_id)}/event/{q(event_id)}").status_code


def test_a_good_message_is_accepted_and_seen(ours, peer, room):
    local, room_id, version, _, _ = room
    message = _valid_message(peer, room, "hello from afar")
    event_id = peer.event_id(version, message)
    answer = ok(peer.send(ours, uuid.uuid4().hex, [message]))
    assert answer["pdus"] == {event_id: {}}
    SyncWatcher(local).wait_for_message(room_id, "hello from afar")


def _valid_message(peer, room, body, **extra):
    """A message citing exactly what the auth rules ask for, after the peer's join."""
    local, room_id, version, user, join = room
    join_id = peer.event_id(version, join)
    auth = peer.auth_for_message(local, room_id, version, user)
    target = extra.pop("room_id", room_id)
    return peer.message(version, target, user, [join_id], auth, join["depth"] + 1, body, **extra)


def test_a_replayed_transaction_is_answered_again_and_applied_once(ours, peer, room):
    local, room_id, version, _, _ = room
    txn = uuid.uuid4().hex
    first = _valid_message(peer, room, "once")
    answer = ok(peer.send(ours, txn, [first]))
    # The same transaction ID with other content: the first answer, and the new PDU is not applied.
    second = _valid_message(peer, room, "twice?")
    assert ok(peer.send(ours, txn, [second])) == answer
    assert _seen(local, room_id, peer.event_id(version, first)) == 200
    assert _seen(local, room_id, peer.event_id(version, second)) == 404


def test_a_wrong_content_hash_is_kept_redacted(ours, peer, room):
    local, room_id, version, _, _ = room
    signed = _valid_message(peer, room, "the original")
    # The signature covers the redacted event (with the hash), not the content: a changed body
    # keeps a valid signature and a wrong hash.
    forged = tampered(signed, content={"msgtype": "m.text", "body": "forged"})
    event_id = peer.event_id(version, forged)
    assert ok(peer.send(ours, uuid.uuid4().hex, [forged]))["pdus"] == {event_id: {}}
    shown = ok(local.get(f"/rooms/{q(room_id)}/event/{q(event_id)}"))
    assert shown["content"] == {}


def test_a_bad_signature_is_dropped(ours, peer, room):
    local, room_id, version, _, _ = room
    signed = _valid_message(peer, room, "signed by someone else")
    forged = tampered(signed, signatures={peer.name: {peer.key.key_id: "A" * 86}})
    event_id = peer.event_id(version, forged)
    answer = ok(peer.send(ours, uuid.uuid4().hex, [forged]))
    assert "error" in answer["pdus"][event_id]
    assert _seen(local, room_id, event_id) == 404


def test_an_event_failing_the_auth_rules_is_rejected_and_never_served(ours, peer, room):
    local, room_id, version, user, join = room
    # The peer's user has power 0 and may not change the power levels.
    levels = ok(local.get(f"/rooms/{q(room_id)}/state/m.room.power_levels"))
    levels["users"][user] = 100
    pdu = _valid_message(peer, room, "unused", type="m.room.power_levels", state_key="", content=levels)
    event_id = peer.event_id(version, pdu)
    answer = ok(peer.send(ours, uuid.uuid4().hex, [pdu]))
    assert "rejected" in answer["pdus"][event_id]["error"]
    assert _seen(local, room_id, event_id) == 404
    assert peer.request(ours, "GET", f"/_matrix/federation/v1/event/{q(event_id)}").status_code == 404
    assert ok(local.get(f"/rooms/{q(room_id)}/state/m.room.power_levels"))["users"].get(user) is None


def test_pdus_for_unknown_rooms_malformed_or_oversized_are_skipped(ours, peer, room):
    local, room_id, version, _, _ = room
    unknown = _valid_message(peer, room, "elsewhere", room_id="!nowhere:" + peer.name)
    malformed = {"room_id": room_id, "type": "m.room.message"}
    oversized = _valid_message(peer, room, "x" * 70_000)
    good = _valid_message(peer, room, "still delivered")
    answer = ok(peer.send(ours, uuid.uuid4().hex, [unknown, malformed, "not an object", oversized, good]))
    assert answer["pdus"] == {peer.event_id(version, good): {}}
    assert _seen(local, room_id, peer.event_id(version, oversized)) == 404


def test_too_many_pdus_in_one_transaction_is_refused(ours, peer, room):
    pdus = [_valid_message(peer, room, f"m{i}") for i in range(51)]
    assert_error(peer.send(ours, uuid.uuid4().hex, pdus), 400, "M_BAD_JSON")


def test_requests_not_signed_by_their_origin_are_unauthorized(ours, peer, room):
    path = "/_matrix/federation/v1/send/" + uuid.uuid4().hex
    body = {"origin": peer.name, "origin_server_ts": 0, "pdus": [], "edus": []}
    # Another server's name with the peer's key: the key fetched for that server does not match.
    other_key = generate_signing_key()
    assert_error(peer.request(ours, "PUT", path, body, key=other_key), 401, "M_UNAUTHORIZED")
    assert_error(peer.request(ours, "PUT", path, body, origin="127.0.0.1:1"), 401, "M_UNAUTHORIZED")


def test_a_missing_prev_event_is_fetched_with_get_missing_events(ours, peer, room):
    local, room_id, version, _, _ = room
    first = _valid_message(peer, room, "the one we missed")
    first_id = peer.event_id(version, first)
    second = peer.message(version, room_id, first["sender"], [first_id], first["auth_events"], first["depth"] + 1,
                          "the one sent")
    peer.missing_answer = [first]
    try:
        answer = ok(peer.send(ours, uuid.uuid4().hex, [second]))
    finally:
        peer.missing_answer = []
    assert answer["pdus"] == {peer.event_id(version, second): {}}
    assert any("/get_missing_events/" in r for r in peer.requests)
    watcher = SyncWatcher(local)
    watcher.wait_for_message(room_id, "the one sent")
    assert _seen(local, room_id, first_id) == 200


def test_a_gap_get_missing_events_cannot_fill_is_bridged_with_the_state_at_the_missing_event(ours, peer, room):
    local, room_id, version, _, _ = room
    unseen = _valid_message(peer, room, "never sent to us")
    unseen_id = peer.event_id(version, unseen)
    after = peer.message(version, room_id, unseen["sender"], [unseen_id], unseen["auth_events"],
                         unseen["depth"] + 1, "after the gap")
    state_ids = [e["event_id"] for e in ok(local.get(f"/rooms/{q(room_id)}/state"))]
    peer.state_ids_answers[unseen_id] = {"pdu_ids": state_ids, "auth_chain_ids": []}
    peer.missing_answer = []
    answer = ok(peer.send(ours, uuid.uuid4().hex, [after]))
    assert answer["pdus"] == {peer.event_id(version, after): {}}
    assert any("/state_ids/" in r and unseen_id.replace("$", "%24") in r for r in peer.requests)
    SyncWatcher(local).wait_for_message(room_id, "after the gap")
    # The missing event was fetched for its place in the graph, not put in the timeline.
    bodies = [e["content"].get("body") for e in ok(local.get(f"/rooms/{q(room_id)}/messages",
                                                            params={"dir": "b", "limit": 50}))["chunk"]]
    assert "after the gap" in bodies and "never sent to us" not in bodies


def test_garbage_answers_to_our_questions_leave_nothing_stored(ours, peer, room):
    local, room_id, version, _, _ = room
    unseen = _valid_message(peer, room, "asked about")
    unseen_id = peer.event_id(version, unseen)
    after = peer.message(version, room_id, unseen["sender"], [unseen_id], unseen["auth_events"],
                         unseen["depth"] + 1, "built on something we cannot get")
    after_id = peer.event_id(version, after)
    peer.garbage = True
    try:
        answer = ok(peer.send(ours, uuid.uuid4().hex, [after]))
    finally:
        peer.garbage = False
    assert "error" in answer["pdus"][after_id]
    assert _seen(local, room_id, after_id) == 404 and _seen(local, room_id, unseen_id) == 404
    # The peer is not held against it: its next good PDU goes through.
    good = _valid_message(peer, room, "sane again")
    assert ok(peer.send(ours, uuid.uuid4().hex, [good]))["pdus"] == {peer.event_id(version, good): {}}


def test_a_redaction_applies_to_the_senders_server_own_events_only_without_the_power(ours, peer, room):
    local, room_id, version, _, _ = room
    assert version in ("11", "12")  # `redacts` in content
    ours_id = ok(local.put(f"/rooms/{q(room_id)}/send/m.room.message/{uuid.uuid4().hex}",
                           {"msgtype": "m.text", "body": "mine"}))["event_id"]
    theirs = _valid_message(peer, room, "theirs")
    ok(peer.send(ours, uuid.uuid4().hex, [theirs]))
    theirs_id = peer.event_id(version, theirs)
    for target in (ours_id, theirs_id):
        redaction = _valid_message(peer, room, "", type="m.room.redaction", content={"redacts": target})
        redaction_id = peer.event_id(version, redaction)
        # Power 0 may send a redaction (events_default), so it is accepted either way.
        assert ok(peer.send(ours, uuid.uuid4().hex, [redaction]))["pdus"] == {redaction_id: {}}
    assert ok(local.get(f"/rooms/{q(room_id)}/event/{q(ours_id)}"))["content"] == {"msgtype": "m.text",
                                                                                  "body": "mine"}
    assert ok(local.get(f"/rooms/{q(room_id)}/event/{q(theirs_id)}"))["content"] == {}


def test_an_invite_in_an_unknown_room_version_is_refused(ours, peer):
    local = register(ours, "i")
    room_id = "!somewhere:" + peer.name
    pdu = peer.sign("10", {"room_id": room_id, "type": "m.room.member", "state_key": local.user_id,
                           "sender": peer.user("x"), "content": {"membership": "invite"}, "origin_server_ts": 1,
                           "prev_events": [], "auth_events": [], "depth": 5})
    event_id = peer.event_id("10", pdu)
    resp = peer.request(ours, "PUT", f"/_matrix/federation/v2/invite/{q(room_id)}/{q(event_id)}",
                        {"event": pdu, "room_version": "999", "invite_room_state": []})
    assert_error(resp, 400, "M_INCOMPATIBLE_ROOM_VERSION")


def test_a_join_for_a_user_of_another_server_is_refused(ours, peer):
    local = register(ours, "j")
    room_id = create_room(local, preset="public_chat")
    resp = peer.request(ours, "GET", f"/_matrix/federation/v1/make_join/{q(room_id)}/{q('@x:elsewhere.test')}",
                        params={"ver": "12"})
    assert_error(resp, 403, "M_FORBIDDEN")


def test_make_join_from_a_server_without_the_rooms_version_is_incompatible(ours, peer):
    local = register(ours, "v")
    room_id = create_room(local, preset="public_chat", room_version="12")
    resp = peer.request(ours, "GET", f"/_matrix/federation/v1/make_join/{q(room_id)}/{q(peer.user('old'))}",
                        params={"ver": ["1", "2"]})
    body = assert_error(resp, 400, "M_INCOMPATIBLE_ROOM_VERSION")
    assert body["room_version"] == "12"


def test_typing_from_a_server_the_rooms_acl_denies_is_ignored(ours, peer, room):
    local, room_id, _, user, _ = room
    watcher = SyncWatcher(local)

    def typing_edu(typing: bool) -> dict:
        return {"edu_type": "m.typing", "content": {"room_id": room_id, "user_id": user, "typing": typing}}

    def typing_now() -> list:
        events = watcher.room_section(watcher.next_batch(0), room_id).get("ephemeral", {}).get("events", [])
        return next((e["content"]["user_ids"] for e in events if e["type"] == "m.typing"), None)

    ok(peer.send(ours, uuid.uuid4().hex, [], [typing_edu(True)]))
    watcher.wait_for_ephemeral(room_id, lambda e: e["type"] == "m.typing" and user in e["content"]["user_ids"],
                               "the peer's user typing")
    ok(peer.send(ours, uuid.uuid4().hex, [], [typing_edu(False)]))
    watcher.wait_for_ephemeral(room_id, lambda e: e["type"] == "m.typing" and user not in e["content"]["user_ids"],
                               "the peer's user no longer typing")
    ok(local.put(f"/rooms/{q(room_id)}/state/m.room.server_acl", {"allow": ["*"], "allow_ip_literals": False}))
    ok(peer.send(ours, uuid.uuid4().hex, [], [typing_edu(True)]))
    # The EDU was applied or skipped when /send answered: nothing new to see.
    assert typing_now() in (None, [])


def test_nul_in_identifiers_is_refused_not_a_server_error(ours, peer, room):
    local, room_id, version, _, _ = room
    # In a path or query parameter: 400, before any lookup.
    for path, params in ((f"/_matrix/federation/v1/event/{q('$a' + chr(0) + 'b')}", None),
                         (f"/_matrix/federation/v1/state_ids/{q(room_id)}", {"event_id": "$a\x00b"})):
        assert_error(peer.request(ours, "GET", path, params=params), 400, "M_INVALID_PARAM")
    # In a PDU: dropped, and the transaction's other PDUs still go through.
    bad_room = _valid_message(peer, room, "nul room", room_id="!a\x00b:" + peer.name)
    bad_prev = _valid_message(peer, room, "nul prev", prev_events=["$a\x00b"])
    good = _valid_message(peer, room, "after the NULs")
    answer = ok(peer.send(ours, uuid.uuid4().hex, [bad_room, bad_prev, good]))
    assert answer["pdus"] == {peer.event_id(version, good): {}}
