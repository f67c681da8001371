"""Runs `storage.prune` every ten minutes on each replica, a batch at a time."""

from __future__ import annotations

import asyncio

import structlog
from sqlalchemy.exc import SQLAlchemyError

from open_clanker.core.tasks import cancel_and_wait
from open_clanker.storage.prune import prune
from open_clanker.storage.store import Store

log = structlog.get_logger("open_clanker.prune")

PRUNE_EVERY_S = 600.0
MAX_BATCHES = 100  # per round: a huge backlog is worked off over several rounds
PAUSE_S = 0.05  # between batches: other transactions get their turn


class Pruner:
    def __init__(self, store: Store, every_s: float = PRUNE_EVERY_S) -> None:
        self._store = store
        self._every_s = every_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="pruner")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def prune_once(self) -> int:
        removed = 0
        for _ in range(MAX_BATCHES):
            pruned = await prune(self._store.db)
            removed += pruned.total
            if not pruned.total:
                break
            await asyncio.sleep(PAUSE_S)
        if removed:
            log.info("storage_pruned", rows=removed)
        return removed

    async def _run(self) -> None:
        while True:
            try:
                await self.prune_once()
            except (SQLAlchemyError, OSError) as exc:
                log.warning("prune_failed", error=type(exc).__name__)
            await asyncio.sleep(self._every_s)
