"""Where a turn waits for its session: one turn at a time per session, across replicas.

A turn may start when its message is the session's oldest pending one and the session's
lease is free (or lapsed); taking the lease is one conditional UPDATE (`ClaimStore.take_turn`).
A finished turn sends a `session_free` notice, which wakes the waiters here and on every other
replica; waiters also re-check on a short backoff, so a notice lost between replicas, or a
lease left by a replica that died, delays a turn by seconds and never strands it.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib

from open_clanker.pipeline.bus import EventBus
from open_clanker.storage.claims import Claim, ClaimStore

SESSION_FREE = "session_free"
FIRST_RECHECK_S = 0.1
MAX_RECHECK_S = 2.0


class _Waiters:
    """This replica's turns waiting for one session: their messages' seqs, oldest first, and
    the event that wakes them (replaced each time it is set)."""

    __slots__ = ("event", "seqs")

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.seqs: list[int] = []

    def wake(self) -> None:
        self.event.set()
        self.event = asyncio.Event()


class SessionGate:
    def __init__(self, claims: ClaimStore, bus: EventBus) -> None:
        self._claims = claims
        self._bus = bus
        self._waiting: dict[str, _Waiters] = {}  # dropped when its last waiter leaves
        bus.on_notice(self._on_notice)

    async def wait_turn(self, key: str, claim: Claim, seq: int) -> int:
        """Return once this turn holds the session (its message `seq` is next), with the
        session's history version read as it was taken."""
        recheck = FIRST_RECHECK_S
        waiters = self._enter(key, seq)
        won = False
        try:
            while True:
                event = waiters.event  # before asking: a notice during the ask is not missed
                # Only this replica's oldest waiter asks the database: a later message of the
                # session cannot be next while an earlier one waits here. So a freed session
                # costs one attempt per replica, not one per waiting message.
                if waiters.seqs[0] == seq:
                    version = await self._claims.take_turn_at(key, claim, seq)
                    if version is not None:
                        won = True
                        return version
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), recheck)
                recheck = min(recheck * 2, MAX_RECHECK_S)
        finally:
            self._leave(key, seq, won)

    async def freed(self, key: str) -> None:
        await self._bus.notify(SESSION_FREE, key)

    def _on_notice(self, kind: str, key: str) -> None:
        if kind != SESSION_FREE:
            return
        waiters = self._waiting.get(key)
        if waiters is not None:
            waiters.wake()

    def _enter(self, key: str, seq: int) -> _Waiters:
        waiters = self._waiting.get(key)
        if waiters is None:
            waiters = self._waiting[key] = _Waiters()
        bisect.insort(waiters.seqs, seq)
        return waiters

    def _leave(self, key: str, seq: int, won: bool) -> None:
        waiters = self._waiting[key]
        was_oldest = waiters.seqs[0] == seq
        waiters.seqs.remove(seq)
        if not waiters.seqs:
            del self._waiting[key]
        elif was_oldest and not won:
            # It gave up (stopped, cancelled): the next one asks now. One that won runs its
            # turn, and its end wakes the rest with a session_free notice.
            waiters.wake()
