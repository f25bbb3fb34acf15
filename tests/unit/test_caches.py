"""Caches are bounded and each says what invalidates it."""

import pytest

from hs.caches import REGISTRY, LruCache


def test_a_cache_must_name_what_invalidates_it():
    with pytest.raises(ValueError):
        LruCache("nameless_source", 10, invalidated_by="")


def test_least_recently_used_entry_is_evicted_first():
    cache = LruCache("lru_order", 2, invalidated_by="test")
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "a" is now the most recently used
    cache.put("c", 3)
    assert cache.get("b") is None
    assert (cache.get("a"), cache.get("c")) == (1, 3)


def test_invalidate_drops_one_key():
    cache = LruCache("invalidate_one", 5, invalidated_by="test")
    cache.put("a", 1)
    cache.put("b", 2)
    cache.invalidate("a")
    assert cache.get("a") is None and cache.get("b") == 2


def test_every_cache_the_homeserver_builds_declares_its_source():
    import hs.storage.events  # noqa: F401  (modules whose stores build caches)
    from hs.storage.events import EventStore
    from hs.storage.state import StateStore
    state = StateStore(db=None)
    EventStore(db=None, state_store=state)
    assert REGISTRY
    assert all(cache.invalidated_by for cache in REGISTRY.values())


def test_batcher_loads_the_first_key_at_once_and_the_keys_asked_meanwhile_together():
    import gevent

    from hs.caches import Batcher
    loads = []

    def load(keys):
        loads.append(sorted(keys))
        gevent.sleep(0.01)  # a query in flight
        return {k: k * 10 for k in keys}

    batcher = Batcher(load)
    greenlets = [gevent.spawn(batcher.get, k) for k in (1, 2, 3, 4)]
    gevent.joinall(greenlets, timeout=2)
    assert [g.value for g in greenlets] == [10, 20, 30, 40]
    assert loads == [[1], [2, 3, 4]]


def test_a_failed_batch_fails_every_caller_in_it_and_the_next_batch_still_runs():
    import gevent

    from hs.caches import Batcher
    calls = []

    def load(keys):
        calls.append(sorted(keys))
        gevent.sleep(0.01)
        if 2 in keys:
            raise ValueError("boom")
        return {k: k for k in keys}

    batcher = Batcher(load)
    first = gevent.spawn(batcher.get, 1)
    second, third = gevent.spawn(batcher.get, 2), gevent.spawn(batcher.get, 3)
    gevent.joinall([first, second, third], timeout=2)
    assert first.value == 1
    assert isinstance(second.exception, ValueError) and isinstance(third.exception, ValueError)
    assert batcher.get(5) == 5


def test_a_weighed_cache_counts_weight_not_items_and_keeps_the_newest_even_if_heavy():
    cache = LruCache("weighed_test", 10, invalidated_by="test", weigh=len)
    cache.put("a", [1] * 4)
    cache.put("b", [1] * 4)
    assert cache.get("a") == [1] * 4  # a is now the most recent
    cache.put("c", [1] * 4)  # 12 > 10: the least recent (b) goes
    assert cache.get("b") is None and cache.get("a") is not None and cache.get("c") is not None
    cache.put("a", [1])  # replacing an item replaces its weight: 5 in all
    cache.put("d", [1] * 5)
    assert [cache.get(k) is not None for k in "acd"] == [True, True, True]
    cache.put("huge", [1] * 50)  # heavier than the whole cache: kept alone
    assert cache.get("huge") is not None and all(cache.get(k) is None for k in "acd")
    cache.invalidate("huge")
    cache.put("e", [1] * 10)
    assert cache.get("e") is not None


def test_get_many_splits_held_and_missing_keys_once_each():
    cache = LruCache("get_many_test", 3, invalidated_by="test")
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get_many(["a", "x", "a", "y", "b"]) == ({"a": 1, "b": 2}, ["x", "y"])
    cache.put("c", 3)
    cache.get_many(["a"])  # a is now the most recent: b goes first
    cache.put("d", 4)
    assert cache.get_many("abcd") == ({"a": 1, "c": 3, "d": 4}, ["b"])
