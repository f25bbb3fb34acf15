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
