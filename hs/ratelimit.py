"""Token-bucket rate limits (Synapse's `per_second` / `burst_count`), per process."""

import math
import time

from hs.config import RateLimit
from hs.errors import Codes, MatrixError


class RateLimiter:
    """Each key (a user, an address) has a bucket that refills at `per_second` up to `burst_count`.

    Buckets live in memory: a limit is enforced by the process that serves the endpoint, which
    is the one process per endpoint that HAProxy routes to.
    """

    def __init__(self, limit: RateLimit, clock=time.monotonic, max_keys: int = 100_000):
        self.limit = limit
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: dict = {}  # key -> (tokens, last refill time)

    def _level(self, key, now):
        tokens, last = self._buckets.get(key, (self.limit.burst_count, now))
        return min(self.limit.burst_count, tokens + (now - last) * self.limit.per_second)

    def check(self, key, *, cost: float = 1.0, consume: bool = True) -> None:
        """Take `cost` from the key's bucket, or raise 429 M_LIMIT_EXCEEDED with retry_after_ms.

        With consume=False it only asks whether the key is limited now (a failed-login limit is
        checked before the attempt and charged only when the attempt fails)."""
        now = self.clock()
        tokens = self._level(key, now)
        if tokens < cost:
            wait = (cost - tokens) / self.limit.per_second if self.limit.per_second > 0 else 3600.0
            retry_ms = max(1, math.ceil(wait * 1000))
            raise MatrixError(429, Codes.LIMIT_EXCEEDED, "Too many requests", retry_after_ms=retry_ms,
                              headers={"Retry-After": str(math.ceil(retry_ms / 1000))})
        if not consume:
            return
        if len(self._buckets) >= self.max_keys and key not in self._buckets:
            self._evict_full(now)
        self._buckets[key] = (tokens - cost, now)

    def _evict_full(self, now):
        """Drop buckets that have refilled: they hold no information. If that is not enough,
        drop the fullest tenth. Never all of them: whoever can fill the table with throwaway keys
        (made-up user names, fresh IPv6 addresses) must not thereby empty a locked account's bucket."""
        levels = {k: self._level(k, now) for k in self._buckets}
        for key, level in levels.items():
            if level >= self.limit.burst_count:
                del self._buckets[key]
        if len(self._buckets) >= self.max_keys:
            fullest = sorted(self._buckets, key=levels.__getitem__, reverse=True)
            for key in fullest[:max(1, len(fullest) // 10)]:
                del self._buckets[key]
