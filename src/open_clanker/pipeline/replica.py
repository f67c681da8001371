"""This process as one replica among several: its id, and the heartbeat that keeps its claims.

Every claim this replica holds (session turns, pending messages, outbox parts, channel leases)
is renewed by one transaction every `lease_s / 3`. If renewing fails for a whole `lease_s`, the
claims may have moved to another replica: `claims_valid()` then says no, and side effects
that cannot be fenced in the database (a platform send) wait until the heartbeat is back.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from sqlalchemy.exc import SQLAlchemyError

from open_clanker.core.tasks import cancel_and_wait
from open_clanker.storage.claims import Claim, ClaimStore

log = structlog.get_logger("open_clanker.replica")

# A claim is trusted locally for `lease_s` minus a sixth of it (5 s of 30), so a send that
# starts just before the claim lapses cannot overlap another replica's send of the same part.
SAFETY_SHARE = 1 / 6


def new_replica_id() -> str:
    host = socket.gethostname().split(".")[0][:40] or "host"
    return f"{host}-{os.getpid()}-{secrets.token_hex(2)}"


@dataclass(frozen=True, slots=True)
class Replica:
    id: str
    lease_s: float
    # False: one process owns the database (SQLite), nobody else can take a claim.
    contested: bool

    def claim(self) -> Claim:
        """A fresh claim for one turn of this replica."""
        return Claim(self.id, secrets.token_hex(8))


class Heartbeat:
    def __init__(
        self,
        claims: ClaimStore,
        replica: Replica,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._claims = claims
        self._replica = replica
        self._clock = clock
        self._valid_until = clock() + replica.lease_s
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    @property
    def interval_s(self) -> float:
        return self._replica.lease_s / 3

    def claims_valid(self) -> bool:
        if not self._replica.contested:
            return True  # one process owns the database: nobody can take a claim over
        return self._clock() < self._valid_until - self._replica.lease_s * SAFETY_SHARE

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="heartbeat")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def beat(self) -> bool:
        started = self._clock()
        try:
            await self._claims.heartbeat(self._replica.id)
        except (SQLAlchemyError, OSError) as exc:
            if not self._failing:
                log.warning("heartbeat_failed", error=type(exc).__name__)
            self._failing = True
            return False
        self._valid_until = started + self._replica.lease_s
        if self._failing:
            log.info("heartbeat_recovered")
            self._failing = False
        return True

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            await self.beat()
