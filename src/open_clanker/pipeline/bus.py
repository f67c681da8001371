"""In-process event bus: every accepted message and reply goes to each subscriber's queue.

Queues are bounded; a subscriber that falls behind loses its oldest events rather than
growing memory or slowing the pipeline. Beside events the bus carries *notices*: small
wake-ups between replicas ("session_free", "outbox", "stop"), delivered at most once — every
waiter also re-checks storage on its own, so a lost notice costs a moment, never a message.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

from open_clanker.core.types import Message

QUEUE_SIZE = 256

# (kind, key): e.g. ("session_free", "telegram:42"), ("outbox", "telegram").
NoticeListener = Callable[[str, str], None]


class EventBus(Protocol):
    async def publish(self, message: Message) -> None: ...

    def subscribe(self) -> AbstractAsyncContextManager[asyncio.Queue[Message]]: ...

    async def notify(self, kind: str, key: str) -> None:
        """Tell every replica's listeners (this one's included)."""
        ...

    def on_notice(self, listener: NoticeListener) -> None: ...

    async def close(self) -> None: ...


class Notices:
    """The listeners of one process."""

    def __init__(self) -> None:
        self._listeners: list[NoticeListener] = []

    def add(self, listener: NoticeListener) -> None:
        self._listeners.append(listener)

    def deliver(self, kind: str, key: str) -> None:
        for listener in self._listeners:
            listener(kind, key)


class MemoryBus:
    def __init__(self) -> None:
        self._subscribers: set[asyncio.Queue[Message]] = set()
        self.notices = Notices()

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

    async def notify(self, kind: str, key: str) -> None:
        self.notices.deliver(kind, key)

    def on_notice(self, listener: NoticeListener) -> None:
        self.notices.add(listener)

    async def close(self) -> None:
        self._subscribers.clear()
