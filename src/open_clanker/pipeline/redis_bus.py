"""Event fan-out across replicas through Redis pub/sub.

Every replica publishes its events to one Redis channel and delivers what it hears there to
its own WebSocket subscribers — including its own events, so each subscriber sees each event
exactly once whichever replica handled the message.
"""

from __future__ import annotations

import asyncio
import contextlib
from contextlib import AbstractAsyncContextManager
from typing import Any

import structlog

from open_clanker.core.errors import ConfigError
from open_clanker.core.extras import require_extra
from open_clanker.core.tasks import cancel_and_wait
from open_clanker.core.types import Message
from open_clanker.pipeline.bus import MemoryBus

log = structlog.get_logger("open_clanker.bus")

CHANNEL = "open-clanker:events"
RECONNECT_DELAY_S = 1.0


class RedisBus:
    def __init__(self, url: str, channel: str = CHANNEL) -> None:
        require_extra("bus.url", "Redis", "redis", ("redis.asyncio",))
        import redis.asyncio as redis  # imported only when a Redis bus is configured
        from redis.exceptions import RedisError

        self._errors: tuple[type[BaseException], ...] = (RedisError, OSError)
        self._redis: Any = redis.from_url(url)
        self._channel = channel
        self._local = MemoryBus()
        self._listener: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    @property
    def subscriber_count(self) -> int:
        return self._local.subscriber_count

    async def start(self) -> None:
        try:
            await self._redis.ping()
        except self._errors as exc:
            await self._redis.aclose()
            raise ConfigError(f"bus.url: cannot reach Redis ({type(exc).__name__}).") from None
        self._listener = asyncio.create_task(self._listen(), name="redis-bus")
        await asyncio.wait_for(self._ready.wait(), 10)

    async def publish(self, message: Message) -> None:
        try:
            await self._redis.publish(self._channel, message.model_dump_json())
        except self._errors as exc:
            # The message is stored already; only live subscribers miss this event.
            log.warning("bus_publish_failed", error=type(exc).__name__)
            self._local.deliver_local(message)

    async def _listen(self) -> None:
        while True:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(self._channel)
                self._ready.set()
                async for item in pubsub.listen():
                    if item.get("type") != "message":
                        continue
                    try:
                        message = Message.model_validate_json(item["data"])
                    except ValueError:
                        log.warning("bus_event_malformed")
                        continue
                    self._local.deliver_local(message)
            except self._errors as exc:
                log.warning("bus_disconnected", error=type(exc).__name__)
                await asyncio.sleep(RECONNECT_DELAY_S)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    def subscribe(self) -> AbstractAsyncContextManager[asyncio.Queue[Message]]:
        return self._local.subscribe()

    async def close(self) -> None:
        await cancel_and_wait(self._listener)
        await self._local.close()
        await self._redis.aclose()


async def open_bus(url: str) -> MemoryBus | RedisBus:
    if url.startswith(("redis://", "rediss://")):
        bus = RedisBus(url)
        await bus.start()
        return bus
    return MemoryBus()
