"""One receiver per platform connection: Telegram polling, the Discord gateway and Slack's
Socket Mode each run on the one replica holding that connection's lease (SPEC §9).

Every replica keeps trying to take the lease; the holder renews it (here and in its
heartbeat) and receives. When the holder dies its lease lapses after `lease_s`, and a standby
takes it on its next try (every `lease_s / 6`, at most 5 s): failover within `lease_s` + 5 s.
A holder that finds its lease taken (it stalled past `lease_s`) stops receiving at once.
Every replica sends, whoever receives.
"""

from __future__ import annotations

import asyncio
from typing import Protocol, runtime_checkable

import structlog
from sqlalchemy.exc import SQLAlchemyError

from open_clanker.channels.base import Channel
from open_clanker.core.tasks import cancel_and_wait
from open_clanker.pipeline.replica import Heartbeat, Replica
from open_clanker.storage.claims import ClaimStore

log = structlog.get_logger("open_clanker.replica")

MAX_TRY_EVERY_S = 5.0


@runtime_checkable
class ExclusiveReceiver(Protocol):
    """A channel whose platform connection must be opened by one replica at a time."""

    @property
    def exclusive_receiver(self) -> bool: ...

    @property
    def receiver_name(self) -> str:
        """The lease's name: the platform connection (e.g. one bot), not just the channel."""
        ...

    async def start_receiving(self) -> None: ...

    async def stop_receiving(self) -> None: ...


def needs_lease(channel: Channel) -> bool:
    return isinstance(channel, ExclusiveReceiver) and channel.exclusive_receiver


class ReceiverLease:
    def __init__(
        self,
        channel: ExclusiveReceiver,
        claims: ClaimStore,
        replica: Replica,
        heartbeat: Heartbeat,
    ) -> None:
        self._channel = channel
        self._claims = claims
        self._replica = replica
        self._heartbeat = heartbeat
        self.name = f"receiver:{channel.receiver_name}"
        self.holder: str | None = None
        self.receiving = False
        self._task: asyncio.Task[None] | None = None

    @property
    def try_every_s(self) -> float:
        return min(MAX_TRY_EVERY_S, self._replica.lease_s / 6)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"lease-{self.name}")

    async def stop(self) -> None:
        """Stop trying (shutdown); the channel's own stop_receiving is the runtime's call."""
        await cancel_and_wait(self._task)
        self._task = None

    async def step(self) -> None:
        """One try: take or renew the lease, and start or stop receiving to match."""
        try:
            held = await self._claims.take_lease(self.name, self._replica.id)
            self.holder = self._replica.id if held else await self._claims.lease_holder(self.name)
        except (SQLAlchemyError, OSError) as exc:
            log.warning("receiver_lease_failed", lease=self.name, error=type(exc).__name__)
            # Storage is unreachable: keep receiving only while our claims are surely ours.
            held = self.receiving and self._heartbeat.claims_valid()
        if held and not self.receiving:
            log.info("receiver_lease_taken", lease=self.name, replica=self._replica.id)
            await self._channel.start_receiving()
            self.receiving = True
        elif not held and self.receiving:
            log.warning("receiver_lease_lost", lease=self.name, holder=self.holder)
            await self._channel.stop_receiving()
            self.receiving = False

    async def _run(self) -> None:
        while True:
            await self.step()
            await asyncio.sleep(self.try_every_s)
