"""Per-sender rate limit in fixed windows, with one refusal notice per window.

A window opens with a sender's first message and lasts a minute; the first `per_minute`
messages in it pass. Counting is atomic (in memory, or in Redis across replicas), so exactly
one message of a window is the first one over the limit: that one, and only that one, carries
the refusal notice, on whichever replica it arrived.
"""

from __future__ import annotations

from dataclasses import dataclass

from open_clanker.pipeline.bus import EventBus
from open_clanker.pipeline.counters import Count, MemoryCounters, WindowCounters, counters_for

WINDOW_S = 60.0
MAX_TRACKED = 100_000  # bounded memory: past this the windows nearest their end are forgotten


@dataclass(frozen=True, slots=True)
class RateDecision:
    allowed: bool
    retry_after: float = 0.0
    notify: bool = False  # first refusal in this window: tell the sender once


def decide_rate(count: Count, per_window: int) -> RateDecision:
    """The decision for a message, from its window's count with that message included."""
    if count.value <= per_window:
        return RateDecision(True)
    return RateDecision(
        False, retry_after=max(count.resets_in, 0.001), notify=count.value == per_window + 1
    )


class RateLimiter:
    def __init__(self, per_minute: int, counters: WindowCounters | None = None) -> None:
        self.per_minute = per_minute
        self._counters = counters if counters is not None else MemoryCounters(MAX_TRACKED)

    async def check(self, key: str) -> RateDecision:
        return decide_rate(await self._counters.hit(key, WINDOW_S), self.per_minute)


def limiter_for(bus: EventBus, namespace: str, per_minute: int) -> RateLimiter:
    """Counted in Redis when the bus is Redis (every replica together), else in this process."""
    return RateLimiter(per_minute, counters_for(bus, namespace, "rate", MAX_TRACKED))
