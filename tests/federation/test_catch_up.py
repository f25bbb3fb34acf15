"""A server that was down catches up (issue 10, Outbound): the sender backs off, then, once the
destination is back and talks to us, it sends the newest event of each room at once, and the
destination fetches what it missed with /get_missing_events. Two of our servers, one restarted."""

import uuid

from tests.federation_fixture import SharedRoom, SyncWatcher, paginate_back, send_text


def test_a_server_back_from_downtime_gets_every_message_it_missed_in_order(ours, ours_b):
    shared = SharedRoom(ours, ours_b)
    send_text(shared.host_user, shared.room_id, "before the outage")
    shared.guest_watch.wait_for_message(shared.room_id, "before the outage")

    ours_b.stop_process()  # its directory, key and database stay
    missed = [f"while down {i} {uuid.uuid4().hex}" for i in range(4)]
    for text in missed:
        send_text(shared.host_user, shared.room_id, text)

    ours_b.start()
    # Its first request to us (a key fetch or this join's server's traffic) clears our backoff;
    # one message from it is such a request.
    send_text(shared.guest_user, shared.room_id, f"back {uuid.uuid4().hex}")
    SyncWatcher(shared.guest_user).wait_for_message(shared.room_id, missed[-1], timeout=30)
    bodies = [e["content"].get("body") for e in reversed(paginate_back(shared.guest_user, shared.room_id))
              if e["type"] == "m.room.message"]
    assert [b for b in bodies if b in missed] == missed
