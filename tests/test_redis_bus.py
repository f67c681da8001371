"""Event fan-out across two replicas through a real Redis (OPENCLAW_TEST_REDIS_URL)."""

from __future__ import annotations

import asyncio
import os

import pytest

from open_clanker.core.errors import ConfigError
from open_clanker.core.types import ChannelType, Message, SessionKey
from open_clanker.pipeline.redis_bus import RedisBus, open_bus

REDIS_URL = os.environ.get("OPENCLAW_TEST_REDIS_URL", "")

needs_redis = pytest.mark.skipif(
    not REDIS_URL, reason="OPENCLAW_TEST_REDIS_URL is not set (CI sets it)"
)


def event(text: str) -> Message:
    return Message(
        channel_type=ChannelType.API,
        channel_id="x",
        sender="api",
        text=text,
        session=SessionKey("api:x"),
    )


@needs_redis
@pytest.mark.redis
async def test_every_replica_sees_every_event_once() -> None:
    channel = f"open-clanker-test:{os.getpid()}"
    a, b = RedisBus(REDIS_URL, channel), RedisBus(REDIS_URL, channel)
    await a.start()
    await b.start()
    try:
        async with a.subscribe() as qa, b.subscribe() as qb:
            await a.publish(event("from a"))
            await b.publish(event("from b"))
            got_a = {(await asyncio.wait_for(qa.get(), 5)).text for _ in range(2)}
            got_b = {(await asyncio.wait_for(qb.get(), 5)).text for _ in range(2)}
            assert got_a == got_b == {"from a", "from b"}
            await asyncio.sleep(0.05)
            assert qa.empty() and qb.empty()  # once, not twice
    finally:
        await a.close()
        await b.close()


async def test_unreachable_redis_is_a_clear_config_error() -> None:
    with pytest.raises(ConfigError, match=r"bus\.url: cannot reach Redis"):
        await open_bus("redis://127.0.0.1:1/0")


async def test_memory_url_gives_memory_bus() -> None:
    bus = await open_bus("memory://")
    assert type(bus).__name__ == "MemoryBus"
