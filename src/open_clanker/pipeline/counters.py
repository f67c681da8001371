"""Fixed-window counters behind the rate limit and the auth lockout: in this process, or in
Redis so that every replica counts together (SPEC §9).

A window starts with its first hit and lasts `window_s`; a hit returns the window's count with
this hit included, atomically, so two replicas never both see the same count. The policies
(`ratelimit.decide_rate`, `lockout.decide_attempt`) are pure functions of that count and run
the same way whichever backend counted.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from open_clanker.pipeline.bus import EventBus
from open_clanker.pipeline.redis_bus import RedisBus

log = structlog.get_logger("open_clanker.limits")


@dataclass(frozen=True, slots=True)
class Count:
    value: int  # hits in the current window (the hit just made included)
    resets_in: float  # seconds until the window ends; 0 when there is no window


NO_WINDOW = Count(0, 0.0)


class WindowCounters(Protocol):
    async def hit(self, key: str, window_s: float) -> Count:
        """Count one hit, opening a window of `window_s` if none is open."""
        ...

    async def peek(self, key: str) -> Count:
        """The open window's count, without counting."""
        ...

    async def extend(self, key: str, ttl_s: float) -> None:
        """Make the open window end `ttl_s` from now (a lockout outlasts its window)."""
        ...


@dataclass(slots=True)
class _Window:
    count: int
    ends_at: float


class MemoryCounters:
    """One process's counters, bounded: past `max_keys` the window nearest its end goes first
    (expired ones before any live one); the table is never cleared wholesale."""

    def __init__(self, max_keys: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_keys = max_keys
        self._clock = clock
        self._windows: dict[str, _Window] = {}
        # (ends_at, key); an entry whose window was extended or replaced is skipped lazily.
        self._ends: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self._windows)

    async def hit(self, key: str, window_s: float) -> Count:
        now = self._clock()
        self._expire(now)
        window = self._windows.get(key)
        if window is None:
            if len(self._windows) >= self.max_keys:
                self._evict_one()
            window = self._windows[key] = _Window(0, now + window_s)
            heapq.heappush(self._ends, (window.ends_at, key))
        window.count += 1
        return Count(window.count, window.ends_at - now)

    async def peek(self, key: str) -> Count:
        now = self._clock()
        window = self._windows.get(key)
        if window is None or window.ends_at <= now:
            return NO_WINDOW
        return Count(window.count, window.ends_at - now)

    async def extend(self, key: str, ttl_s: float) -> None:
        window = self._windows.get(key)
        if window is not None:
            window.ends_at = self._clock() + ttl_s
            heapq.heappush(self._ends, (window.ends_at, key))

    def _current(self, ends_at: float, key: str) -> bool:
        window = self._windows.get(key)
        return window is not None and window.ends_at == ends_at

    def _expire(self, now: float) -> None:
        while self._ends:
            ends_at, key = self._ends[0]
            if not self._current(ends_at, key):
                heapq.heappop(self._ends)  # stale: extended or already gone
            elif ends_at <= now:
                heapq.heappop(self._ends)
                del self._windows[key]
            else:
                return

    def _evict_one(self) -> None:
        while self._ends:
            ends_at, key = heapq.heappop(self._ends)
            if self._current(ends_at, key):
                del self._windows[key]
                return


# INCR and the window's expiry in one atomic step; a key that lost its expiry gets it back,
# so no counter can live forever.
_HIT_SCRIPT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {n, ttl}
"""


class RedisCounters:
    """Counters shared by every replica on one Redis, under `<namespace>:<name>:`. Windows end
    by Redis's own clock (key expiry), so replicas' clocks need not agree. If Redis cannot be
    reached, this replica counts on its own until it can again (logged once each way)."""

    def __init__(self, client: Any, prefix: str, fallback: MemoryCounters) -> None:
        from redis.exceptions import RedisError

        self._client = client
        self._prefix = prefix
        self._fallback = fallback
        self._errors: tuple[type[BaseException], ...] = (RedisError, OSError)
        self._hit = client.register_script(_HIT_SCRIPT)
        self._degraded = False

    def _key(self, key: str) -> str:
        return self._prefix + key

    async def hit(self, key: str, window_s: float) -> Count:
        try:
            n, ttl_ms = await self._hit(keys=[self._key(key)], args=[_ms(window_s)])
        except self._errors as exc:
            self._failed(exc)
            return await self._fallback.hit(key, window_s)
        self._recovered()
        return Count(int(n), int(ttl_ms) / 1000)

    async def peek(self, key: str) -> Count:
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                value, ttl_ms = await pipe.get(self._key(key)).pttl(self._key(key)).execute()
        except self._errors as exc:
            self._failed(exc)
            return await self._fallback.peek(key)
        self._recovered()
        if value is None or int(ttl_ms) <= 0:
            return NO_WINDOW
        return Count(int(value), int(ttl_ms) / 1000)

    async def extend(self, key: str, ttl_s: float) -> None:
        try:
            await self._client.pexpire(self._key(key), _ms(ttl_s))
        except self._errors as exc:
            self._failed(exc)
            await self._fallback.extend(key, ttl_s)

    def _failed(self, exc: BaseException) -> None:
        if not self._degraded:
            self._degraded = True
            log.warning("shared_limits_unavailable", error=type(exc).__name__)

    def _recovered(self) -> None:
        if self._degraded:
            self._degraded = False
            log.info("shared_limits_restored")


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def counters_for(bus: EventBus, namespace: str, name: str, max_keys: int) -> WindowCounters:
    """Redis counters when the bus is Redis (one connection pool for both), else in memory."""
    local = MemoryCounters(max_keys)
    if isinstance(bus, RedisBus):
        return RedisCounters(bus.client, f"{namespace}:{name}:", local)
    return local
