"""Bounded per-process caches, each declaring what invalidates it.

A cache that can go stale must name the stream or event that invalidates it; the registry
lets a test check that every cache says so.
"""

from collections import OrderedDict

import gevent.event

REGISTRY: dict[str, "LruCache"] = {}


class LruCache:
    """At most `size` items, or with `weigh`, items weighing at most `size` in all (the newest
    is kept even if it alone weighs more): a cache of room states must count members, not rooms."""

    def __init__(self, name: str, size: int, *, invalidated_by: str, weigh=None):
        if not invalidated_by:
            raise ValueError(f"cache {name} must say what invalidates it")
        self.name = name
        self.size = size
        self.invalidated_by = invalidated_by
        self._weigh = weigh or (lambda value: 1)
        self._weight = 0
        self._items: OrderedDict = OrderedDict()  # key -> (value, weight)
        REGISTRY[name] = self

    def get(self, key, default=None):
        item = self._items.get(key)
        if item is None:
            return default
        self._items.move_to_end(key)
        return item[0]

    def get_many(self, keys) -> tuple[dict, list]:
        """({key: value} of the keys held, [the others]), each key once."""
        found, missing = {}, []
        for key in dict.fromkeys(keys):
            item = self._items.get(key)
            if item is None:
                missing.append(key)
            else:
                self._items.move_to_end(key)
                found[key] = item[0]
        return found, missing

    def put(self, key, value) -> None:
        self.invalidate(key)
        weight = self._weigh(value)
        self._items[key] = (value, weight)
        self._weight += weight
        while self._weight > self.size and len(self._items) > 1:
            _, (_, dropped) = self._items.popitem(last=False)
            self._weight -= dropped

    def invalidate(self, key) -> None:
        item = self._items.pop(key, None)
        if item is not None:
            self._weight -= item[1]

    def clear(self) -> None:
        self._items.clear()
        self._weight = 0


class SingleFlight:
    """Concurrent identical reads share one: the first caller with a key runs it, and those
    arriving while it runs wait for its result (or its exception) instead of running it again.
    What a cache cannot do alone: when one message wakes hundreds of parked /sync requests,
    they all miss a cold cache together, before the first of them has filled it."""

    def __init__(self):
        self._running: dict = {}

    def run(self, key, read):
        pending = self._running.get(key)
        if pending is not None:
            return pending.get()
        result = gevent.event.AsyncResult()
        self._running[key] = result
        try:
            value = read()
        except BaseException as e:
            result.set_exception(e)
            raise
        finally:
            del self._running[key]
        result.set(value)
        return value


class Batcher:
    """Concurrent reads of different keys become one: `load(keys) -> {key: value}` runs for
    every key asked for while the previous load was running. The first caller finds nothing
    running and loads at once (no added latency); when one message wakes hundreds of parked
    /sync requests, those arriving during that read share the next one."""

    def __init__(self, load):
        self._load = load
        self._waiting: dict = {}  # key -> AsyncResult, for the next load
        self._running = False

    def get(self, key):
        result = self._waiting.get(key)
        if result is None:
            result = self._waiting[key] = gevent.event.AsyncResult()
        if not self._running:
            self._run_once()
        return result.get()

    def _run_once(self) -> None:
        """Loads what is waiting; what arrived meanwhile is loaded by a greenlet of its own, so
        this caller returns with its answer."""
        self._running = True
        batch, self._waiting = self._waiting, {}
        try:
            values = self._load(list(batch))
        except Exception as e:
            for result in batch.values():
                result.set_exception(e)
        except BaseException:
            # This caller was killed (its client went away): the others must not wait forever.
            for result in batch.values():
                result.set_exception(RuntimeError("batched read interrupted"))
            raise
        else:
            for key, result in batch.items():
                result.set(values.get(key))
        finally:
            self._running = False
            if self._waiting:
                self._running = True
                gevent.spawn(self._run_next)

    def _run_next(self) -> None:
        self._running = False
        self._run_once()
