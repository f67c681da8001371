"""Where a turn waits for its session: one turn at a time per session, across replicas.

A turn may start when its message is the session's oldest pending one and the session's
lease is free (or lapsed); taking the lease is one conditional UPDATE (`ClaimStore.take_turn`).
A finished turn sends a `session_free` notice, which wakes the waiters here and on every other
replica; waiters also re-check on a short backoff, so a notice lost between replicas, or a
lease left by a replica that died, delays a turn by seconds and never strands it.
"""

from __future__ import annotations

import asyncio
import contextlib

from open_clanker.pipeline.bus import EventBus
from open_clanker.storage.claims import Claim, ClaimStore

SESSION_FREE = "session_free"
FIRST_RECHECK_S = 0.1
MAX_RECHECK_S = 2.0


class SessionGate:
    def __init__(self, claims: ClaimStore, bus: EventBus) -> None:
        self._claims = claims
        self._bus = bus
        # key -> (event set when the session is freed, number of waiters): dropped when unused.
        self._waiting: dict[str, tuple[asyncio.Event, int]] = {}
        bus.on_notice(self._on_notice)

    async def wait_turn(self, key: str, claim: Claim, seq: int) -> int:
        """Return once this turn holds the session (its message `seq` is next), with the
        session's history version read as it was taken."""
        recheck = FIRST_RECHECK_S
        while True:
            event = self._enter(key)
            try:
                version = await self._claims.take_turn_at(key, claim, seq)
                if version is not None:
                    return version
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), recheck)
            finally:
                self._leave(key)
            recheck = min(recheck * 2, MAX_RECHECK_S)

    async def freed(self, key: str) -> None:
        await self._bus.notify(SESSION_FREE, key)

    def _on_notice(self, kind: str, key: str) -> None:
        if kind != SESSION_FREE:
            return
        entry = self._waiting.get(key)
        if entry is not None:
            entry[0].set()
            # Waiters that wake re-enter with a fresh event.
            self._waiting[key] = (asyncio.Event(), entry[1])

    def _enter(self, key: str) -> asyncio.Event:
        event, users = self._waiting.get(key) or (asyncio.Event(), 0)
        self._waiting[key] = (event, users + 1)
        return event

    def _leave(self, key: str) -> None:
        event, users = self._waiting[key]
        if users <= 1:
            del self._waiting[key]
        else:
            self._waiting[key] = (event, users - 1)
