"""Rate limit and auth lockout across replicas (SPEC §9): two counters on one real Redis, then
two real gateways sharing one PostgreSQL database and one Redis."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import redis.asyncio as redis_asyncio

from open_clanker.config.model import Config
from open_clanker.gateway.lockout import MAX_FAILURES, Outcome, lockout_for
from open_clanker.pipeline.counters import MemoryCounters, RedisCounters
from open_clanker.pipeline.ratelimit import RateLimiter, limiter_for
from open_clanker.pipeline.redis_bus import RedisBus
from open_clanker.storage.database import Database
from tests.harness import running_gateway
from tests.storage_urls import PG_URL, _drop_everything

REDIS_URL = os.environ.get("OPENCLAW_TEST_REDIS_URL", "")

needs_redis = pytest.mark.skipif(
    not REDIS_URL, reason="OPENCLAW_TEST_REDIS_URL is not set (CI sets it)"
)
needs_services = pytest.mark.skipif(
    not (REDIS_URL and PG_URL),
    reason="OPENCLAW_TEST_POSTGRES_URL and OPENCLAW_TEST_REDIS_URL are not set (CI sets them)",
)


@pytest.fixture
def namespace() -> str:
    """Each test counts under its own Redis prefix: no test sees another's windows."""
    return f"oc-test-{secrets.token_hex(4)}"


@pytest.fixture
async def buses(namespace: str) -> AsyncIterator[tuple[RedisBus, RedisBus]]:
    a, b = RedisBus(REDIS_URL, namespace), RedisBus(REDIS_URL, namespace)
    await a.start()
    await b.start()
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


@needs_redis
@pytest.mark.redis
async def test_two_rate_limiters_on_one_redis_count_together(
    buses: tuple[RedisBus, RedisBus], namespace: str
) -> None:
    a, b = (limiter_for(bus, namespace, 5) for bus in buses)
    assert isinstance(a._counters, RedisCounters)
    sequential = [await (a if i % 2 else b).check("telegram:42") for i in range(10)]
    assert [d.allowed for d in sequential] == [True] * 5 + [False] * 5
    assert [d.notify for d in sequential].count(True) == 1  # one notice per window, in all
    assert all(50 < d.retry_after <= 60 for d in sequential if not d.allowed)
    # At once, split over both: still exactly five, and one notice.
    burst = await asyncio.gather(*((a, b)[i % 2].check("telegram:7") for i in range(40)))
    assert sum(d.allowed for d in burst) == 5
    assert sum(d.notify for d in burst) == 1
    keys = await buses[0].client.keys(f"{namespace}:rate:*")
    assert sorted(keys) == [f"{namespace}:rate:telegram:{n}".encode() for n in (42, 7)]
    assert 0 < await buses[0].client.pttl(keys[0]) <= 60_000  # a window that ends by itself


@needs_redis
@pytest.mark.redis
async def test_a_lockout_at_one_replica_holds_at_the_other(
    buses: tuple[RedisBus, RedisBus], namespace: str
) -> None:
    a, b = (lockout_for(bus, namespace) for bus in buses)
    for _ in range(MAX_FAILURES):
        assert (await a.attempt("203.0.113.9", valid=False)).outcome is Outcome.REFUSE
    wait = await b.retry_after("203.0.113.9")
    assert wait is not None and 290 < wait <= 300
    assert (await b.attempt("203.0.113.9", valid=True)).locked  # the right token too
    assert (await b.attempt("203.0.113.10", valid=True)).outcome is Outcome.PASS
    # 150 guesses at once over both replicas: only 10 are ever answered "wrong".
    verdicts = await asyncio.gather(
        *((a, b)[i % 2].attempt("198.51.100.1", valid=False) for i in range(150))
    )
    assert sum(v.outcome is Outcome.REFUSE for v in verdicts) == MAX_FAILURES
    assert sum(v.locked for v in verdicts) == 150 - MAX_FAILURES


@needs_redis
@pytest.mark.redis
async def test_without_redis_a_replica_counts_on_its_own() -> None:
    unreachable = redis_asyncio.from_url("redis://127.0.0.1:1/0")
    try:
        limiter = RateLimiter(2, RedisCounters(unreachable, "x:", MemoryCounters(10)))
        decisions = [await limiter.check("k") for _ in range(3)]
    finally:
        await unreachable.aclose()
    assert [d.allowed for d in decisions] == [True, True, False]  # limited, never crashed


async def _reset_postgres() -> None:
    db = Database(PG_URL)
    try:
        await db.write(_drop_everything)
    finally:
        await db.close()


def _shared_config(namespace: str, **limits: Any) -> Config:
    return Config.model_validate(
        {
            "storage": {"url": PG_URL},
            "bus": {"url": REDIS_URL, "namespace": namespace},
            "limits": limits,
        }
    )


@needs_services
@pytest.mark.postgres
@pytest.mark.redis
async def test_two_gateways_share_the_rate_limit(namespace: str) -> None:
    await _reset_postgres()
    config = _shared_config(namespace, messages_per_minute=5)
    async with (
        running_gateway(config) as a,
        running_gateway(config) as b,
        aiohttp.ClientSession() as http,
    ):
        statuses = []
        for i in range(10):
            gw = (a, b)[i % 2]
            body = {"text": f"message {i}", "session": "shared"}
            async with http.post(f"{gw.base_url}/api/v1/chat", json=body, headers=gw.auth) as r:
                statuses.append(r.status)
                if r.status == 429:
                    assert (await r.json())["error"]["code"] == "rate_limited"
                    assert 1 <= int(r.headers["Retry-After"]) <= 60
    assert statuses.count(200) == 5
    assert statuses.count(429) == 5


@needs_services
@pytest.mark.postgres
@pytest.mark.redis
async def test_ten_bad_tokens_at_one_gateway_lock_the_address_out_at_the_other(
    namespace: str,
) -> None:
    await _reset_postgres()
    config = _shared_config(namespace)
    async with (
        running_gateway(config) as a,
        running_gateway(config) as b,
        aiohttp.ClientSession() as http,
    ):
        async with http.get(f"{b.base_url}/api/v1/status", headers=b.auth) as r:
            assert r.status == 200
        bad = {"Authorization": "Bearer not-the-token-at-all"}
        for _ in range(MAX_FAILURES):
            async with http.get(f"{a.base_url}/api/v1/status", headers=bad) as r:
                assert r.status == 401
        async with http.get(f"{b.base_url}/api/v1/status", headers=b.auth) as r:
            assert r.status == 429
            assert 200 < int(r.headers["Retry-After"]) <= 300
            assert (await r.json())["error"]["code"] == "rate_limited"
