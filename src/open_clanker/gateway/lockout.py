"""After 10 failed auth attempts in a minute from one address: 429 for 5 minutes (SPEC §5)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

MAX_FAILURES = 10
WINDOW_S = 60.0
LOCKOUT_S = 300.0
MAX_TRACKED = 50_000  # bounded memory under a spray of addresses


class AuthLockout:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._locked_until: dict[str, float] = {}

    def retry_after(self, addr: str) -> float | None:
        """Seconds until this address may try again, or None if it is not locked out."""
        until = self._locked_until.get(addr)
        if until is None:
            return None
        left = until - self._clock()
        if left <= 0:
            del self._locked_until[addr]
            return None
        return left

    def failed(self, addr: str) -> None:
        now = self._clock()
        if len(self._failures) >= MAX_TRACKED and addr not in self._failures:
            self._prune(now)
        hits = self._failures.setdefault(addr, deque())
        hits.append(now)
        while hits and hits[0] <= now - WINDOW_S:
            hits.popleft()
        if len(hits) >= MAX_FAILURES:
            self._locked_until[addr] = now + LOCKOUT_S
            del self._failures[addr]

    def _prune(self, now: float) -> None:
        stale = [a for a, h in self._failures.items() if not h or h[-1] <= now - WINDOW_S]
        for a in stale:
            del self._failures[a]
        if len(self._failures) >= MAX_TRACKED:
            self._failures.clear()
