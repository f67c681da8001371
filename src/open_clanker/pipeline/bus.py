"""In-process event bus: every accepted message and reply goes to each subscriber's queue.

Queues are bounded; a subscriber that falls behind loses its oldest events rather than
growing memory or slowing the pipeline.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

from open_clanker.core.types import Message

QUEUE_SIZE = 256


class EventBus(Protocol):
    async def publish(self, message: Message) -> None: ...

    def subscribe(self) -> AbstractAsyncContextManager[asyncio.Queue[Message]]: ...

    async def close(self) -> None: ...


class MemoryBus:
    def __init__(self) -> None:
        self._subscribers: set[asyncio.Queue[Message]] = set()

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    async def publish(self, message: Message) -> None:
        self.deliver_local(message)

    def deliver_local(self, message: Message) -> None:
        for queue in self._subscribers:
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(message)

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[Message]]:
        queue: asyncio.Queue[Message] = asyncio.Queue(QUEUE_SIZE)
        self._subscribers.add(queue)
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)

    async def close(self) -> None:
        self._subscribers.clear()
