"""Continuous recovery: every replica looks for pending messages whose replica died.

Every few seconds the sweep claims pending messages whose claim has lapsed (their replica was
killed, or the previous run of this one), oldest first, and hands them to the pipeline, which
answers them in their sessions' order. A message a live replica is answering has a fresh
claim (its heartbeat renews it), so a starting replica never takes live work. Messages
accepted longer ago than `recovery_max_age_s` are marked expired instead of answered.
"""

from __future__ import annotations

import asyncio
import random
import time

import structlog
from sqlalchemy.exc import SQLAlchemyError

from open_clanker.core.client_context import client_from_json
from open_clanker.core.tasks import cancel_and_wait
from open_clanker.core.types import ChannelType, Inbound
from open_clanker.pipeline.pipeline import Pipeline
from open_clanker.storage.messages import message_from_row
from open_clanker.storage.store import Store

log = structlog.get_logger("open_clanker.recovery")

SWEEP_EVERY_S = 5.0
BATCH = 50
# Answered in their own response, so any replica can finish them after a crash.
TOKEN_CHANNELS = (ChannelType.API, ChannelType.WEBCHAT, ChannelType.OPENAI, ChannelType.CLI)


class RecoverySweep:
    def __init__(
        self,
        store: Store,
        pipeline: Pipeline,
        channels: list[str],
        max_age_s: float,
        every_s: float = SWEEP_EVERY_S,
    ) -> None:
        self._store = store
        self._pipeline = pipeline
        # Platform messages only where this replica can deliver the answer.
        self._channels = [c.value for c in TOKEN_CHANNELS] + channels
        self._max_age_s = max_age_s
        self._every_s = every_s
        self._task: asyncio.Task[None] | None = None

    def set_max_age(self, seconds: float) -> None:
        """`limits.recovery_max_age_s` changed by a reload."""
        self._max_age_s = seconds

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="recovery-sweep")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def sweep_once(self) -> tuple[int, int]:
        """Take what is orphaned now; returns (resumed, expired)."""
        resumed = expired = 0
        while self._pipeline.accepting:
            rows, newly_expired = await self._store.claims.take_orphans(
                self._pipeline.replica.id,
                self._channels,
                time.time() - self._max_age_s,
                BATCH,
            )
            if newly_expired:
                log.warning("pending_expired", count=newly_expired)
            expired += newly_expired
            for row, context in rows:
                message = message_from_row(row)
                inbound = Inbound(
                    message=message,
                    platform_id=context.get("platform_id"),
                    is_direct=bool(context.get("is_direct", True)),
                    addressed=bool(context.get("addressed", True)),
                    reply_target=context.get("reply_target"),
                    thread_id=context.get("thread_id"),
                    request_id=str(context.get("request_id") or message.id),
                    client=client_from_json(context.get("client")),
                )
                age = time.time() - message.timestamp.timestamp()
                log.info("pending_resumed", message_id=message.id, age_s=round(age))
                self._pipeline.resume(inbound, row.seq)
                resumed += 1
            if len(rows) < BATCH:
                break
        return resumed, expired

    async def _run(self) -> None:
        while self._pipeline.accepting:
            try:
                await self.sweep_once()
            except (SQLAlchemyError, OSError) as exc:
                log.warning("recovery_sweep_failed", error=type(exc).__name__)
            # Jitter: replicas started together do not sweep in lockstep.
            await asyncio.sleep(self._every_s * (0.8 + random.random() * 0.4))
