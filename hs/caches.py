"""Bounded per-process caches, each declaring what invalidates it.

A cache that can go stale must name the stream or event that invalidates it; the registry
lets a test check that every cache says so.
"""

from collections import OrderedDict

REGISTRY: dict[str, "LruCache"] = {}


class LruCache:
    def __init__(self, name: str, size: int, *, invalidated_by: str):
        if not invalidated_by:
            raise ValueError(f"cache {name} must say what invalidates it")
        self.name = name
        self.size = size
        self.invalidated_by = invalidated_by
        self._items: OrderedDict = OrderedDict()
        REGISTRY[name] = self

    def get(self, key, default=None):
        value = self._items.get(key, default)
        if key in self._items:
            self._items.move_to_end(key)
        return value

    def put(self, key, value) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        if len(self._items) > self.size:
            self._items.popitem(last=False)

    def invalidate(self, key) -> None:
        self._items.pop(key, None)

    def clear(self) -> None:
        self._items.clear()
