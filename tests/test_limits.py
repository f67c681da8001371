"""The rate limit's and the auth lockout's decisions (pure tables), and the bounded in-process
counters behind them (fixed windows, a fake clock)."""

from __future__ import annotations

import pytest

from open_clanker.gateway.lockout import (
    LOCKOUT_S,
    MAX_FAILURES,
    AuthLockout,
    Outcome,
    decide_attempt,
)
from open_clanker.pipeline.counters import Count, MemoryCounters
from open_clanker.pipeline.ratelimit import RateDecision, RateLimiter, decide_rate


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("count", "limit", "expected"),
    [
        (Count(1, 60.0), 5, RateDecision(True)),
        (Count(5, 12.0), 5, RateDecision(True)),
        (Count(6, 12.0), 5, RateDecision(False, 12.0, notify=True)),  # first over: tell once
        (Count(7, 11.0), 5, RateDecision(False, 11.0, notify=False)),
        (Count(2, 0.0), 1, RateDecision(False, 0.001, notify=True)),  # never "retry in 0 s"
    ],
)
def test_decide_rate(count: Count, limit: int, expected: RateDecision) -> None:
    assert decide_rate(count, limit) == expected


@pytest.mark.parametrize(
    ("valid", "failures", "outcome", "retry_after", "lock_for"),
    [
        (True, Count(0, 0.0), Outcome.PASS, 0.0, None),
        (True, Count(MAX_FAILURES - 1, 30.0), Outcome.PASS, 0.0, None),
        (True, Count(MAX_FAILURES, 250.0), Outcome.LOCKED, 250.0, None),  # even the right token
        (False, Count(1, 60.0), Outcome.REFUSE, 0.0, None),
        (False, Count(MAX_FAILURES, 40.0), Outcome.REFUSE, 0.0, LOCKOUT_S),  # the 10th locks
        (False, Count(MAX_FAILURES + 1, 299.0), Outcome.LOCKED, 299.0, None),
        (False, Count(MAX_FAILURES + 140, 5.0), Outcome.LOCKED, 5.0, None),
    ],
)
def test_decide_attempt(
    valid: bool, failures: Count, outcome: Outcome, retry_after: float, lock_for: float | None
) -> None:
    verdict = decide_attempt(valid, failures)
    assert (verdict.outcome, verdict.retry_after, verdict.lock_for) == (
        outcome,
        retry_after,
        lock_for,
    )


async def test_rate_limiter_windows_and_one_notice() -> None:
    clock = Clock()
    limiter = RateLimiter(3, MemoryCounters(100, clock))
    decisions = [await limiter.check("telegram:1") for _ in range(6)]
    assert [d.allowed for d in decisions] == [True, True, True, False, False, False]
    assert [d.notify for d in decisions] == [False, False, False, True, False, False]
    assert (await limiter.check("telegram:2")).allowed  # per sender
    clock.now += 59.9
    assert not (await limiter.check("telegram:1")).allowed
    clock.now += 0.2  # the window that opened with the first message is over
    fresh = [await limiter.check("telegram:1") for _ in range(4)]
    assert [d.allowed for d in fresh] == [True, True, True, False]
    assert fresh[-1].notify  # a new window, a new (single) notice


async def test_lockout_after_ten_failures_for_five_minutes() -> None:
    clock = Clock()
    lockout = AuthLockout(MemoryCounters(100, clock))
    for _ in range(MAX_FAILURES - 1):
        assert (await lockout.attempt("a", valid=False)).outcome is Outcome.REFUSE
    assert await lockout.retry_after("a") is None
    assert (await lockout.attempt("a", valid=True)).outcome is Outcome.PASS
    tenth = await lockout.attempt("a", valid=False)
    assert tenth.outcome is Outcome.REFUSE  # the 10th wrong token still hears 401
    wait = await lockout.retry_after("a")
    assert wait is not None and wait == pytest.approx(LOCKOUT_S)
    assert (await lockout.attempt("a", valid=True)).locked  # whatever it sends
    assert await lockout.retry_after("b") is None
    clock.now += 200
    assert (await lockout.attempt("a", valid=False)).locked  # more failures: still locked
    clock.now += 101
    assert await lockout.retry_after("a") is None
    assert (await lockout.attempt("a", valid=True)).outcome is Outcome.PASS


async def test_failures_spread_over_more_than_a_window_do_not_lock() -> None:
    clock = Clock()
    lockout = AuthLockout(MemoryCounters(100, clock))
    for _ in range(MAX_FAILURES - 1):
        await lockout.attempt("a", valid=False)
    clock.now += 61
    assert (await lockout.attempt("a", valid=False)).outcome is Outcome.REFUSE
    assert await lockout.retry_after("a") is None


async def test_counters_are_bounded_and_never_reset_wholesale() -> None:
    """Item 15: past the bound the windows nearest their end go first, expired ones before
    any live one; a lockout (a long window) outlives a spray of fresh addresses."""
    clock = Clock()
    counters = MemoryCounters(50, clock)
    lockout = AuthLockout(counters)
    for _ in range(MAX_FAILURES):
        await lockout.attempt("victim-of-own-guessing", valid=False)
    clock.now += 1
    for i in range(30):
        await lockout.attempt(f"old-{i}", valid=False)
    clock.now += 61  # the 30 windows above are over; the lockout is not
    for i in range(5_000):
        await lockout.attempt(f"spray-{i}", valid=False)
        assert len(counters) <= 50
    assert await lockout.retry_after("victim-of-own-guessing") is not None
    # The newest live windows are kept; the oldest live ones were evicted, never all of them.
    assert (await counters.peek("spray-4999")).value == 1
    assert (await counters.peek("spray-0")).value == 0


async def test_expired_windows_are_dropped_as_time_passes() -> None:
    clock = Clock()
    counters = MemoryCounters(1000, clock)
    for i in range(100):
        await counters.hit(f"k{i}", 60)
    clock.now += 61
    await counters.hit("new", 60)
    assert len(counters) == 1
    await counters.hit("long", 60)
    await counters.extend("long", 300)
    clock.now += 100
    await counters.hit("other", 60)
    assert (await counters.peek("long")).value == 1
    assert (await counters.peek("new")).value == 0
