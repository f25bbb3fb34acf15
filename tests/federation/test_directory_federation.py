"""Room directories and spaces across servers (issue 11): public room search both ways against a
real Synapse, a space with children on both servers walked from either side, /room_summary of a
Synapse room; and, with a fake peer, the signed inbound endpoints, the
allow_public_rooms_over_federation switch and what our clients get when another server fails.
"""

import uuid

import pytest
import requests

from hs.events.signing import generate_signing_key
from tests.federation.fake_peer import FakePeer
from tests.federation_fixture import FederatingHomeserver, SynapseProcess, create_room, join, ok, register
from tests.harness import Client, q

V1 = "/_matrix/client/v1"
FED = "/_matrix/federation/v1"


@pytest.fixture(scope="module")
def synapse(test_ca):
    # Synapse lets nobody publish rooms unless room_list_publication_rules says so.
    server = SynapseProcess(test_ca, room_list_publication_rules=[{"action": "allow"}])
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="module")
def ours(db_dsn, test_ca):
    server = FederatingHomeserver(db_dsn, test_ca, allow_public_rooms_over_federation=True)
    try:
        yield server.start()
    finally:
        server.stop()


def serve(peer: FakePeer, answers: dict) -> None:
    """Makes the peer answer {(method, unquoted path): (status, JSON body)} first, this very dict
    (a test may change it later); other requests as before."""
    peer.answers = answers


def unique(word: str) -> str:
    return f"{word}{uuid.uuid4().hex[:8]}"


def room_ids(body: dict, key: str = "chunk") -> list[str]:
    return [r["room_id"] for r in body[key]]


def space_with_children(client: Client, children: list[tuple[str, str]], name: str) -> str:
    """A public space whose m.space.child events name each (room ID, via server)."""
    space_id = create_room(client, preset="public_chat", name=name, creation_content={"type": "m.space"})
    for child_id, via in children:
        ok(client.put(f"/rooms/{q(space_id)}/state/m.space.child/{q(child_id)}", {"via": [via]}))
    return space_id


# --- public room search across the servers (real Synapse) ---------------------------------------

def test_a_room_published_on_synapse_is_found_from_our_client(synapse, ours):
    name = unique("Zebra")
    room_id = create_room(register(synapse, "s"), preset="public_chat", visibility="public", name=name,
                          topic="striped")
    ours_user = register(ours, "o")
    searched = ok(ours_user.post("/publicRooms", {"filter": {"generic_search_term": name}},
                                 params={"server": synapse.server_name}))
    assert room_ids(searched) == [room_id]
    assert searched["chunk"][0]["name"] == name and searched["chunk"][0]["topic"] == "striped"
    assert ok(ours_user.post("/publicRooms", {"filter": {"generic_search_term": unique("none")}},
                             params={"server": synapse.server_name}))["chunk"] == []
    assert room_id in room_ids(ok(ours_user.get("/publicRooms", params={"server": synapse.server_name})))
    # Asking another server needs an account (as Synapse); our own list does not.
    denied = Client(ours).get("/publicRooms", params={"server": synapse.server_name})
    assert denied.status_code == 401 and denied.json()["errcode"] == "M_MISSING_TOKEN"
    assert Client(ours).get("/publicRooms", params={"server": ours.server_name}).status_code == 200


def test_a_room_published_here_is_found_from_synapses_client(synapse, ours):
    name = unique("Quokka")
    room_id = create_room(register(ours, "o"), preset="public_chat", visibility="public", name=name)
    other_id = create_room(register(ours, "o"), preset="public_chat", visibility="public", name=unique("Wombat"))
    synapse_user = register(synapse, "s")
    searched = ok(synapse_user.post("/publicRooms", {"filter": {"generic_search_term": name.lower()}},
                                    params={"server": ours.server_name}))
    assert room_ids(searched) == [room_id]
    assert searched["chunk"][0]["name"] == name and searched["chunk"][0]["num_joined_members"] == 1
    listed = room_ids(ok(synapse_user.get("/publicRooms", params={"server": ours.server_name})))
    assert room_id in listed and other_id in listed


# --- spaces with children on both servers (real Synapse) ----------------------------------------

def test_our_client_walks_a_synapse_space_with_children_on_both_servers(synapse, ours):
    synapse_user, ours_user = register(synapse, "s"), register(ours, "o")
    synapse_child = create_room(synapse_user, preset="public_chat", name=unique("SynapseChild"))
    our_child = create_room(ours_user, preset="public_chat", name=unique("OurChild"))
    space_id = space_with_children(synapse_user, [(synapse_child, synapse.server_name),
                                                  (our_child, ours.server_name)], unique("SynapseSpace"))
    join(ours_user, space_id, via=[synapse.server_name])

    body = ok(ours_user.get(f"{V1}/rooms/{q(space_id)}/hierarchy"))
    rooms = {r["room_id"]: r for r in body["rooms"]}
    assert set(rooms) == {space_id, synapse_child, our_child}
    # The Synapse child is known only from Synapse's federation /hierarchy answer.
    assert rooms[synapse_child]["num_joined_members"] == 1 and rooms[synapse_child]["join_rule"] == "public"
    assert rooms[synapse_child]["name"].startswith("SynapseChild")
    assert {c["state_key"] for c in rooms[space_id]["children_state"]} == {synapse_child, our_child}
    # Page by page, the same walk.
    first = ok(ours_user.get(f"{V1}/rooms/{q(space_id)}/hierarchy", params={"limit": "1"}))
    rest = ok(ours_user.get(f"{V1}/rooms/{q(space_id)}/hierarchy", params={"from": first["next_batch"]}))
    assert [r["room_id"] for r in first["rooms"] + rest["rooms"]] == [r["room_id"] for r in body["rooms"]]


def test_synapses_client_walks_our_space_with_children_on_both_servers(synapse, ours):
    synapse_user, ours_user = register(synapse, "s"), register(ours, "o")
    synapse_child = create_room(synapse_user, preset="public_chat", name=unique("SynapseChild"))
    our_child = create_room(ours_user, preset="public_chat", name=unique("OurChild"), topic="from ours")
    space_id = space_with_children(ours_user, [(our_child, ours.server_name),
                                               (synapse_child, synapse.server_name)], unique("OurSpace"))
    join(synapse_user, space_id, via=[ours.server_name])

    body = ok(synapse_user.get(f"{V1}/rooms/{q(space_id)}/hierarchy"))
    rooms = {r["room_id"]: r for r in body["rooms"]}
    assert set(rooms) == {space_id, synapse_child, our_child}
    # Synapse is not in our child: it learnt of it from our federation /hierarchy.
    assert rooms[our_child]["topic"] == "from ours" and rooms[our_child]["name"].startswith("OurChild")


def test_room_summary_of_a_synapse_room_from_our_client(synapse, ours):
    synapse_user, ours_user = register(synapse, "s"), register(ours, "o")
    name = unique("Summary")
    room_id = create_room(synapse_user, preset="public_chat", name=name, topic="about it", room_alias_name=name)
    summary = ok(ours_user.get(f"{V1}/room_summary/{q(room_id)}", params={"via": synapse.server_name}))
    assert summary["room_id"] == room_id and summary["name"] == name and summary["topic"] == "about it"
    assert summary["join_rule"] == "public" and summary["num_joined_members"] == 1
    assert summary["membership"] == "leave"
    # By alias: Synapse resolves it, and names itself as a server in the room.
    by_alias = ok(ours_user.get(f"{V1}/room_summary/{q(f'#{name}:{synapse.server_name}')}"))
    assert by_alias["room_id"] == room_id and by_alias["canonical_alias"] == f"#{name}:{synapse.server_name}"
    assert ours_user.get(f"{V1}/room_summary/{q(f'#no{name}:{synapse.server_name}')}").status_code == 404
    # A room Synapse will not show our server, and one asked of no server, are not found.
    private = create_room(synapse_user, preset="private_chat", name=unique("Private"))
    for params in ({"via": synapse.server_name}, {}):
        missing = ours_user.get(f"{V1}/room_summary/{q(private)}", params=params)
        assert missing.status_code == 404 and missing.json()["errcode"] == "M_NOT_FOUND", missing.text


# --- inbound endpoints: authentication and the switch (fake peer) --------------------------------

def test_inbound_endpoints_need_a_signed_request(ours, peer):
    space_id = space_with_children(register(ours, "o"), [], unique("Space"))
    for path in ("/publicRooms", f"/hierarchy/{q(space_id)}"):
        unsigned = requests.get(ours.fed_url + FED + path, verify=peer.ca.cert_path, timeout=10)
        assert unsigned.status_code == 401 and unsigned.json()["errcode"] == "M_UNAUTHORIZED"
        assert peer.request(ours, "GET", FED + path).status_code == 200
    forged = peer.request(ours, "GET", FED + "/publicRooms", key=generate_signing_key())
    assert forged.status_code == 401


def test_public_rooms_over_federation_get_and_post(ours, peer):
    name = unique("Listed")
    room_id = create_room(register(ours, "o"), preset="public_chat", visibility="public", name=name)
    create_room(register(ours, "o"), preset="public_chat", visibility="public")
    listed = peer.request(ours, "GET", FED + "/publicRooms", params={"limit": "500"})
    assert listed.status_code == 200 and room_id in room_ids(listed.json())
    searched = peer.request(ours, "POST", FED + "/publicRooms", {"filter": {"generic_search_term": name}})
    assert room_ids(searched.json()) == [room_id]
    # Pages follow one another with `since`.
    first = peer.request(ours, "GET", FED + "/publicRooms", params={"limit": "1"}).json()
    assert len(first["chunk"]) == 1 and first["next_batch"]
    second = peer.request(ours, "POST", FED + "/publicRooms", {"limit": 1, "since": first["next_batch"]}).json()
    assert room_ids(second) != room_ids(first)
    bad = peer.request(ours, "POST", FED + "/publicRooms", {"include_all_networks": True,
                                                            "third_party_instance_id": "x|y"})
    assert bad.status_code == 400
    assert peer.request(ours, "GET", FED + "/publicRooms", params={"limit": "x"}).status_code == 400


def test_public_rooms_over_federation_are_refused_unless_allowed(ours_b, peer):
    create_room(register(ours_b, "o"), preset="public_chat", visibility="public")
    for method, body in (("GET", None), ("POST", {"filter": {"generic_search_term": "x"}}), ("POST", "bad")):
        resp = peer.request(ours_b, method, FED + "/publicRooms", body)
        assert resp.status_code == 403 and resp.json()["errcode"] == "M_FORBIDDEN", resp.text


def test_inbound_hierarchy_shows_what_the_server_may_see(ours, peer):
    owner = register(ours, "o")
    public = create_room(owner, preset="public_chat", name=unique("Public"))
    private = create_room(owner, preset="private_chat", name=unique("Private"))
    space_id = create_room(owner, preset="public_chat", creation_content={"type": "m.space"})
    ok(owner.put(f"/rooms/{q(space_id)}/state/m.space.child/{q(public)}", {"via": [ours.server_name],
                                                                           "suggested": True}))
    ok(owner.put(f"/rooms/{q(space_id)}/state/m.space.child/{q(private)}", {"via": [ours.server_name]}))
    ok(owner.put(f"/rooms/{q(space_id)}/state/m.space.child/{q('!elsewhere:example.org')}",
                 {"via": ["example.org"]}))

    body = peer.request(ours, "GET", f"{FED}/hierarchy/{q(space_id)}").json()
    assert body["room"]["room_id"] == space_id and body["room"]["room_type"] == "m.space"
    assert {c["state_key"] for c in body["room"]["children_state"]} == {public, private, "!elsewhere:example.org"}
    assert [c["room_id"] for c in body["children"]] == [public]
    assert "children_state" not in body["children"][0]
    assert body["inaccessible_children"] == [private]

    suggested = peer.request(ours, "GET", f"{FED}/hierarchy/{q(space_id)}", params={"suggested_only": "true"})
    assert [c["state_key"] for c in suggested.json()["room"]["children_state"]] == [public]
    # A room the peer may not see, and an unknown one, are not found.
    for room_id in (private, "!unknown:" + ours.server_name):
        missing = peer.request(ours, "GET", f"{FED}/hierarchy/{q(room_id)}")
        assert missing.status_code == 404 and missing.json()["errcode"] == "M_NOT_FOUND"


# --- outbound: what our clients get from a failing or odd server (fake peer) ---------------------

def test_remote_public_rooms_errors_are_4xx_and_unfiltering_servers_are_filtered_here(ours, peer):
    client = register(ours, "o")
    path = FED + "/publicRooms"
    rooms = [{"room_id": f"!a:{peer.name}", "name": "Apple", "num_joined_members": 2, "world_readable": False,
              "guest_can_join": False}, {"room_id": f"!b:{peer.name}", "topic": "banana", "num_joined_members": 1,
                                         "world_readable": False, "guest_can_join": False}, "junk"]
    answers = {("POST", path): (404, {"errcode": "M_UNRECOGNIZED", "error": "no"}),
               ("GET", path): (200, {"chunk": rooms, "next_batch": "n1", "total_room_count_estimate": 2})}
    serve(peer, answers)
    listed = ok(client.get("/publicRooms", params={"server": peer.name}))
    assert room_ids(listed) == [f"!a:{peer.name}", f"!b:{peer.name}"] and listed["next_batch"] == "n1"
    # The peer does not filter: its list is filtered here.
    searched = ok(client.post("/publicRooms", {"filter": {"generic_search_term": "BANANA"}},
                              params={"server": peer.name}))
    assert room_ids(searched) == [f"!b:{peer.name}"]
    assert any(r.startswith(f"POST {path}") for r in peer.requests)

    answers[("GET", path)] = (403, {"errcode": "M_FORBIDDEN", "error": "no"})
    refused = client.get("/publicRooms", params={"server": peer.name})
    assert refused.status_code == 403 and refused.json()["errcode"] == "M_FORBIDDEN"
    for status, body in ((500, {"errcode": "M_UNKNOWN"}), (200, {"chunk": "no"}), (200, ["a list"])):
        answers[("GET", path)] = (status, body)
        failed = client.get("/publicRooms", params={"server": peer.name})
        assert failed.status_code == 404 and failed.json()["errcode"] == "M_NOT_FOUND", failed.text
    unreachable = client.post("/publicRooms", {}, params={"server": "127.0.0.1:1"})
    assert unreachable.status_code == 404 and unreachable.json()["errcode"] == "M_NOT_FOUND"


def test_our_walk_uses_a_remote_answer_and_skips_bad_ones(ours, peer):
    owner = register(ours, "o")
    good, bad = f"!good{uuid.uuid4().hex[:6]}:{peer.name}", f"!bad{uuid.uuid4().hex[:6]}:{peer.name}"
    space_id = space_with_children(owner, [(good, peer.name), (bad, peer.name)], unique("Space"))
    serve(peer, {("GET", f"{FED}/hierarchy/{good}"): (200, {
        "room": {"room_id": good, "name": "Remote", "num_joined_members": 3, "world_readable": False,
                 "guest_can_join": False, "join_rule": "public", "children_state": []},
        "children": [], "inaccessible_children": []}),
        ("GET", f"{FED}/hierarchy/{bad}"): (200, {"room": {"room_id": "!other:x", "children_state": []}})})
    body = ok(owner.get(f"{V1}/rooms/{q(space_id)}/hierarchy"))
    assert [r["room_id"] for r in body["rooms"]] == [space_id, good]
    assert body["rooms"][1]["name"] == "Remote" and body["rooms"][1]["children_state"] == []
    summary = ok(owner.get(f"{V1}/room_summary/{q(good)}", params={"via": peer.name}))
    assert summary["name"] == "Remote" and summary["membership"] == "leave"
    assert owner.get(f"{V1}/room_summary/{q(bad)}", params={"via": peer.name}).status_code == 404
