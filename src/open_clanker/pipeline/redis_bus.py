"""Event fan-out across replicas through Redis pub/sub.

Every replica publishes its events to one Redis channel and delivers what it hears there to
its own WebSocket subscribers — including its own events, so each subscriber sees each event
exactly once whichever replica handled the message. Notices (wake-ups) travel on a second
channel; a replica hands its own notices to its listeners at once and ignores their echo.
Both channels are named under `bus.namespace`, since pub/sub ignores Redis database numbers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from contextlib import AbstractAsyncContextManager
from typing import Any

import structlog

from open_clanker.core.errors import ConfigError
from open_clanker.core.extras import require_extra
from open_clanker.core.tasks import cancel_and_wait
from open_clanker.core.types import Message
from open_clanker.pipeline.bus import MemoryBus, NoticeListener

log = structlog.get_logger("open_clanker.bus")

DEFAULT_NAMESPACE = "open-clanker"
RECONNECT_DELAY_S = 1.0


class RedisBus:
    def __init__(self, url: str, namespace: str = DEFAULT_NAMESPACE) -> None:
        require_extra("bus.url", "Redis", "redis", ("redis.asyncio",))
        import redis.asyncio as redis  # imported only when a Redis bus is configured
        from redis.exceptions import RedisError

        self._errors: tuple[type[BaseException], ...] = (RedisError, OSError)
        self._redis: Any = redis.from_url(url)
        self.namespace = namespace
        self._channel = f"{namespace}:events"
        self._notice_channel = f"{namespace}:notices"
        self._origin = secrets.token_hex(8)  # to skip the echo of our own notices
        self._local = MemoryBus()
        self._listener: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    @property
    def subscriber_count(self) -> int:
        return self._local.subscriber_count

    @property
    def client(self) -> Any:
        """The Redis connection, for what else counts across replicas (shared limits)."""
        return self._redis

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

    async def notify(self, kind: str, key: str) -> None:
        self._local.notices.deliver(kind, key)
        data = json.dumps({"origin": self._origin, "kind": kind, "key": key})
        try:
            await self._redis.publish(self._notice_channel, data)
        except self._errors as exc:
            # Other replicas re-check storage on their own: they notice a little later.
            log.warning("bus_notice_failed", kind=kind, error=type(exc).__name__)

    def on_notice(self, listener: NoticeListener) -> None:
        self._local.on_notice(listener)

    def _heard(self, channel: bytes | str, data: bytes | str) -> None:
        name = channel.decode() if isinstance(channel, bytes) else channel
        if name == self._notice_channel:
            try:
                notice = json.loads(data)
                origin, kind, key = notice["origin"], str(notice["kind"]), str(notice["key"])
            except (ValueError, KeyError, TypeError):
                log.warning("bus_notice_malformed")
                return
            if origin != self._origin:
                self._local.notices.deliver(kind, key)
            return
        try:
            message = Message.model_validate_json(data)
        except ValueError:
            log.warning("bus_event_malformed")
            return
        self._local.deliver_local(message)

    async def _listen(self) -> None:
        while True:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(self._channel, self._notice_channel)
                self._ready.set()
                async for item in pubsub.listen():
                    if item.get("type") == "message":
                        self._heard(item["channel"], item["data"])
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


async def open_bus(url: str, namespace: str = DEFAULT_NAMESPACE) -> MemoryBus | RedisBus:
    if url.startswith(("redis://", "rediss://")):
        bus = RedisBus(url, namespace)
        await bus.start()
        return bus
    return MemoryBus()
