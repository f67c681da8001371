"""After 10 failed auth attempts in a minute from one address: 429 for 5 minutes, whatever it
sends (SPEC §5), counted across replicas when the bus is Redis.

An attempt is decided in one atomic step with its count (`attempt`): a wrong token is counted
before its 401 is sent, and from the 11th on the answer is 429 whether the token was right or
wrong, so however many attempts arrive at once, at most 10 wrong ones a window learn anything.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from open_clanker.pipeline.bus import EventBus
from open_clanker.pipeline.counters import Count, MemoryCounters, WindowCounters, counters_for

MAX_FAILURES = 10
WINDOW_S = 60.0
LOCKOUT_S = 300.0
MAX_TRACKED = 50_000  # bounded memory under a spray of addresses; nearest-to-expiry go first


class Outcome(enum.Enum):
    PASS = "pass"  # noqa: S105 - an outcome, not a password
    REFUSE = "refuse"  # 401: a wrong or missing token, counted
    LOCKED = "locked"  # 429 + Retry-After


@dataclass(frozen=True, slots=True)
class AuthVerdict:
    outcome: Outcome
    retry_after: float = 0.0
    lock_for: float | None = None  # this failure locks the address: make its window this long

    @property
    def locked(self) -> bool:
        return self.outcome is Outcome.LOCKED


def decide_attempt(valid: bool, failures: Count) -> AuthVerdict:
    """`failures`: the address's failures in its window, this attempt included if it failed."""
    if failures.value > MAX_FAILURES or (valid and failures.value >= MAX_FAILURES):
        return AuthVerdict(Outcome.LOCKED, retry_after=max(failures.resets_in, 0.001))
    if valid:
        return AuthVerdict(Outcome.PASS)
    if failures.value == MAX_FAILURES:
        return AuthVerdict(Outcome.REFUSE, lock_for=LOCKOUT_S)
    return AuthVerdict(Outcome.REFUSE)


class AuthLockout:
    def __init__(self, counters: WindowCounters | None = None) -> None:
        self._counters = counters if counters is not None else MemoryCounters(MAX_TRACKED)

    async def retry_after(self, addr: str) -> float | None:
        """Seconds until this address may try again, or None if it is not locked out."""
        verdict = decide_attempt(True, await self._counters.peek(addr))
        return verdict.retry_after if verdict.locked else None

    async def attempt(self, addr: str, valid: bool) -> AuthVerdict:
        """Count a failed attempt (a valid one is only checked against the lock) and decide."""
        if valid:
            failures = await self._counters.peek(addr)
        else:
            failures = await self._counters.hit(addr, WINDOW_S)
        verdict = decide_attempt(valid, failures)
        if verdict.lock_for is not None:
            await self._counters.extend(addr, verdict.lock_for)
        return verdict


def lockout_for(bus: EventBus, namespace: str) -> AuthLockout:
    """Counted in Redis when the bus is Redis (every replica together), else in this process."""
    return AuthLockout(counters_for(bus, namespace, "auth", MAX_TRACKED))
