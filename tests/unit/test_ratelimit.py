"""RateLimiter: a token bucket per key, driven by an injected clock."""

import pytest

from hs.config import RateLimit
from hs.errors import MatrixError
from hs.ratelimit import RateLimiter


class FakeClock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def limiter(per_second=1.0, burst_count=3, **kw):
    clock = FakeClock()
    return RateLimiter(RateLimit(per_second, burst_count), clock=clock, **kw), clock


def limited(lim, key="k", **kw) -> MatrixError:
    with pytest.raises(MatrixError) as info:
        lim.check(key, **kw)
    assert info.value.status == 429
    assert info.value.errcode == "M_LIMIT_EXCEEDED"
    return info.value


def test_burst_count_requests_pass_then_the_next_is_limited():
    lim, _ = limiter(per_second=1.0, burst_count=3)
    for _ in range(3):
        lim.check("k")
    limited(lim)


def test_keys_have_separate_buckets():
    lim, _ = limiter(burst_count=1)
    lim.check("a")
    limited(lim, "a")
    lim.check("b")


def test_bucket_refills_at_per_second():
    lim, clock = limiter(per_second=2.0, burst_count=2)
    lim.check("k")
    lim.check("k")
    limited(lim)
    clock.now += 0.5  # one token at 2 per second
    lim.check("k")
    limited(lim)


def test_refill_stops_at_burst_count():
    lim, clock = limiter(per_second=1.0, burst_count=2)
    lim.check("k")
    clock.now += 3600
    lim.check("k")
    lim.check("k")
    limited(lim)


def test_retry_after_ms_is_the_time_until_one_token():
    lim, clock = limiter(per_second=0.5, burst_count=1)
    lim.check("k")
    err = limited(lim)
    assert err.extra["retry_after_ms"] == 2000
    assert err.headers == {"Retry-After": "2"}
    clock.now += 1.5
    err = limited(lim)
    assert err.extra["retry_after_ms"] == 500
    assert err.headers == {"Retry-After": "1"}


def test_retry_after_ms_rounds_up_and_is_at_least_one():
    lim, clock = limiter(per_second=3.0, burst_count=1)
    lim.check("k")
    err = limited(lim)
    assert err.extra["retry_after_ms"] == 334  # 1/3 s, rounded up
    clock.now += 0.3333333
    assert limited(lim).extra["retry_after_ms"] == 1


def test_retry_after_ms_is_an_integer_in_the_error_body():
    lim, _ = limiter(per_second=0.17, burst_count=1)
    lim.check("k")
    body = limited(lim).to_json()
    assert body["errcode"] == "M_LIMIT_EXCEEDED"
    assert isinstance(body["retry_after_ms"], int) and body["retry_after_ms"] == 5883


def test_zero_per_second_never_refills():
    lim, clock = limiter(per_second=0.0, burst_count=1)
    lim.check("k")
    clock.now += 10 ** 6
    assert limited(lim).extra["retry_after_ms"] == 3_600_000


def test_consume_false_asks_without_taking():
    lim, _ = limiter(burst_count=2)
    for _ in range(10):
        lim.check("k", consume=False)
    lim.check("k")
    lim.check("k")
    limited(lim, consume=False)
    limited(lim)


def test_limited_request_takes_nothing():
    lim, clock = limiter(per_second=1.0, burst_count=1)
    lim.check("k")
    for _ in range(5):
        limited(lim)
    clock.now += 1.0
    lim.check("k")  # refused attempts did not push the refill further away


def test_cost_above_one_takes_that_many_tokens():
    lim, clock = limiter(per_second=1.0, burst_count=4)
    lim.check("k", cost=3)
    err = limited(lim, cost=2)
    assert err.extra["retry_after_ms"] == 1000
    lim.check("k", cost=1)


def test_a_full_key_table_drops_refilled_buckets_first():
    lim, clock = limiter(per_second=1.0, burst_count=1, max_keys=2)
    lim.check("old")
    clock.now += 10  # "old" has refilled: its bucket carries no information
    lim.check("busy")
    lim.check("new")
    limited(lim, "busy")
    limited(lim, "new")


def test_a_full_key_table_keeps_the_emptiest_buckets():
    # Filling the table with fresh keys must not reset a bucket that is drained.
    lim, _ = limiter(per_second=0.0, burst_count=3, max_keys=10)
    for _ in range(3):
        lim.check("victim")
    for i in range(50):
        lim.check(f"throwaway{i}")
    limited(lim, "victim")
