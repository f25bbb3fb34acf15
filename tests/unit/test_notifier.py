"""The notifier wakes exactly the requests a change concerns, and no change is lost."""

import gevent

from hs.notifier import Notifier, StreamWriteNotifier
from hs.streams import StreamToken


class FakeStream:
    def __init__(self):
        self.listeners = []

    def add_listener(self, callback):
        self.listeners.append(callback)

    def advance(self, token):
        for listener in self.listeners:
            listener(token)


def park(notifier, user, rooms, timeout=2.0, has_news=lambda: False):
    return gevent.spawn(notifier.wait, user, rooms, timeout, has_news)


def test_room_change_wakes_only_that_rooms_waiters():
    notifier = Notifier()
    a, b = park(notifier, "@a:x", ["!r1"]), park(notifier, "@b:x", ["!r2"])
    gevent.sleep(0)
    assert notifier.notify(rooms=["!r1"]) == 1
    assert a.get(timeout=1) is True
    assert not b.ready()
    notifier.notify(users=["@b:x"])
    assert b.get(timeout=1) is True
    assert notifier.parked_count() == 0


def test_wait_times_out_when_nothing_happens():
    notifier = Notifier()
    waiter = park(notifier, "@a:x", ["!r1"], timeout=0.05)
    assert waiter.get(timeout=1) is False
    assert notifier.parked_count() == 0


def test_news_before_parking_returns_at_once():
    notifier = Notifier()
    assert notifier.wait("@a:x", ["!r1"], 5.0, lambda: True) is True


def test_every_concurrent_request_of_a_user_is_woken():
    notifier = Notifier()
    waiters = [park(notifier, "@a:x", []) for _ in range(3)]
    gevent.sleep(0)
    assert notifier.notify(users=["@a:x"]) == 3
    assert all(w.get(timeout=1) for w in waiters)


def test_room_events_wake_only_once_the_stream_has_passed_them():
    notifier, stream = Notifier(), FakeStream()
    room_events = StreamWriteNotifier(notifier, stream)
    waiter = park(notifier, "@a:x", ["!r1"])
    gevent.sleep(0)
    room_events.written(2, rooms=["!r1"])
    stream.advance(1)  # id 1 (another room's event) finished; 2 is not readable yet
    gevent.sleep(0)
    assert not waiter.ready()
    stream.advance(2)
    assert waiter.get(timeout=1) is True


def test_sync_token_round_trips_and_reads_missing_keys_as_zero():
    token = StreamToken(room=5, typing=2)
    assert str(token) == "s5_0_2_0_0_0_0_0"
    assert StreamToken.parse(str(token)) == token
    assert StreamToken.parse("s7") == StreamToken(room=7)


def test_malformed_sync_tokens_are_invalid_param():
    import pytest

    from hs.errors import MatrixError
    for bad in ("", "s", "t1-2", "s1_x", "s1_2_3_4_5_6_7_8_9", "s-1"):
        with pytest.raises(MatrixError) as e:
            StreamToken.parse(bad)
        assert e.value.errcode == "M_INVALID_PARAM", bad
