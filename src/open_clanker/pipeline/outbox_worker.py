"""Delivers queued reply parts through their channels, in order per chat, retrying failures.

Each part is claimed in storage before it is sent and settled only by its claimant, so with
several replicas a part goes out once (SPEC §9); a worker takes only channels this replica
runs. It sleeps until an `outbox` notice (from any replica, through the bus) or the next retry
is due; with other replicas around it also looks again every few seconds, since a notice can
be lost. At shutdown it makes one last pass over what is due (`flush_and_stop`); anything it
cannot deliver in time stays in storage for another replica or the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time

import structlog
from sqlalchemy.exc import SQLAlchemyError

from open_clanker.channels.base import Channels
from open_clanker.core.errors import ChannelError
from open_clanker.core.tasks import cancel_and_wait
from open_clanker.pipeline.bus import EventBus
from open_clanker.pipeline.replica import Heartbeat, Replica, new_replica_id
from open_clanker.storage.outbox import OutboxItem
from open_clanker.storage.store import Store

log = structlog.get_logger("open_clanker.outbox")

MAX_ATTEMPTS = 12
MAX_DELAY_S = 300.0
STORAGE_RETRY_S = 2.0
# With other replicas, how long a worker sleeps at most: a lost notice, or a part whose claim
# lapsed on a replica that died, waits no longer than this.
CONTESTED_RECHECK_S = 3.0
OUTBOX = "outbox"


def retry_delay(attempts: int, retry_after: float | None) -> float:
    if retry_after is not None:
        return min(max(retry_after, 0.5), MAX_DELAY_S)
    return float(min(1.0 * 2**attempts, MAX_DELAY_S) * (0.75 + random.random() / 2))


class OutboxWorker:
    def __init__(
        self,
        store: Store,
        channels: Channels,
        replica: Replica | None = None,
        heartbeat: Heartbeat | None = None,
        bus: EventBus | None = None,
    ) -> None:
        """Without `replica`: this process alone delivers (nobody contests its claims)."""
        self._store = store
        self._channels = channels
        self._replica = replica or Replica(new_replica_id(), store.claims.lease_s, False)
        self._heartbeat = heartbeat or Heartbeat(store.claims, self._replica)
        self._names = [c.type.value for c in channels]
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        if bus is not None:
            bus.on_notice(self._on_notice)

    def _on_notice(self, kind: str, channel: str) -> None:
        if kind == OUTBOX and channel in self._names:
            self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-worker")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def flush_and_stop(self, timeout_s: float) -> bool:
        """Deliver every part that is due now, then stop. True if the last pass finished in
        time; otherwise the pass is cancelled and the undelivered rows wait in storage.

        The running loop makes the pass itself (rather than being cancelled mid-send and a
        second pass started beside it), so no part is sent twice by two passes at once."""
        task = self._task
        if task is None:
            return True
        self._stopping = True
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout_s)
        except TimeoutError:
            log.warning("outbox_flush_timeout", timeout_s=timeout_s)
            await self.stop()
            return False
        self._task = None
        return True

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            final = self._stopping
            try:
                next_due = await self.deliver_due()
            except (SQLAlchemyError, OSError) as exc:
                # The database hiccuped: nothing is lost (rows stay pending); try again soon
                # rather than letting the worker die and strand every later reply.
                log.error("outbox_storage_failed", error=type(exc).__name__)
                next_due = time.time() + STORAGE_RETRY_S
            if final:
                return
            timeout = None if next_due is None else max(next_due - time.time(), 0.05)
            if self._replica.contested:
                timeout = min(timeout or CONTESTED_RECHECK_S, CONTESTED_RECHECK_S)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def deliver_due(self) -> float | None:
        """Deliver every chat's due head part (claiming each first); returns when the next
        not-yet-due one is."""
        while True:
            if not self._heartbeat.claims_valid():
                return time.time() + STORAGE_RETRY_S  # claims may have moved: send nothing
            due, next_due = await self._store.outbox.claim_due(self._replica.id, self._names)
            if not due:
                return next_due
            await asyncio.gather(*(self._deliver(item) for item in due))

    async def _deliver(self, item: OutboxItem) -> None:
        # The id of the message this answers, so delivery lines join that message's lines.
        if item.request_id is None:
            await self._deliver_item(item)
            return
        with structlog.contextvars.bound_contextvars(request_id=item.request_id):
            await self._deliver_item(item)

    async def _deliver_item(self, item: OutboxItem) -> None:
        channel = self._channels.get(item.channel)
        owner = self._replica.id
        if channel is None or not self._heartbeat.claims_valid():
            # Our claim may have lapsed (the heartbeat is failing): hand the part back rather
            # than risk a second send; another replica, or we later, send it.
            await self._store.outbox.release(item.seq, owner)
            return
        try:
            await channel.send(item)
        except ChannelError as exc:
            await self._failed(item, exc)
            return
        except Exception as exc:  # an adapter bug must not kill the worker and strand replies
            log.exception("delivery_crashed", seq=item.seq)
            await self._failed(item, ChannelError(repr(exc), item.channel))
            return
        if not await self._store.outbox.mark_sent(item.seq, owner):
            log.warning("delivery_claim_lost", seq=item.seq, chat=item.channel_id)
            return
        log.info(
            "reply_delivered",
            channel=item.channel,
            chat=item.channel_id,
            part=item.part + 1,
            parts=item.parts,
        )

    async def _failed(self, item: OutboxItem, exc: ChannelError) -> None:
        if not exc.retryable or item.attempts + 1 >= MAX_ATTEMPTS:
            await self._store.outbox.mark_dead(item.seq, exc.message, self._replica.id)
            log.error("delivery_failed", seq=item.seq, chat=item.channel_id, error=exc.message)
            return
        delay = retry_delay(item.attempts, exc.retry_after)
        await self._store.outbox.mark_retry(item.seq, delay, exc.message, self._replica.id)
        log.warning(
            "delivery_retry",
            seq=item.seq,
            chat=item.channel_id,
            delay_s=round(delay, 2),
            error=exc.message,
        )
