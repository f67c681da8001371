"""Per-sender sliding-window rate limit, with at most one refusal notice per window."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

WINDOW_S = 60.0
MAX_TRACKED = 100_000  # bounded memory: idle senders are forgotten past this


@dataclass
class _Bucket:
    hits: deque[float] = field(default_factory=deque)
    notified_until: float = 0.0


@dataclass(frozen=True, slots=True)
class RateDecision:
    allowed: bool
    retry_after: float = 0.0
    notify: bool = False  # first refusal in this window: tell the sender once


class RateLimiter:
    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def check(self, key: str) -> RateDecision:
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= MAX_TRACKED:
                self._forget_idle(now)
            bucket = self._buckets[key] = _Bucket()
        while bucket.hits and bucket.hits[0] <= now - WINDOW_S:
            bucket.hits.popleft()
        if len(bucket.hits) < self.per_minute:
            bucket.hits.append(now)
            return RateDecision(True)
        retry_after = bucket.hits[0] + WINDOW_S - now
        notify = now >= bucket.notified_until
        if notify:
            bucket.notified_until = bucket.hits[0] + WINDOW_S
        return RateDecision(False, retry_after=max(retry_after, 0.001), notify=notify)

    def _forget_idle(self, now: float) -> None:
        idle = [k for k, b in self._buckets.items() if not b.hits or b.hits[-1] <= now - WINDOW_S]
        for k in idle:
            del self._buckets[k]
        if len(self._buckets) >= MAX_TRACKED:  # all busy: drop the oldest half
            for k in list(self._buckets)[: MAX_TRACKED // 2]:
                del self._buckets[k]
