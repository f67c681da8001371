"""Slack with two replicas on one PostgreSQL: one Socket Mode connection (a lease) that moves
when its holder leaves; the Events API answered by either replica, a retry once."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from open_clanker.config.model import Config
from tests.doubles.slack_double import BOT_USER_ID, SlackDouble
from tests.harness import RunningGateway, running_gateway, settled
from tests.storage_urls import fresh_store

PG_URL = os.environ.get("OPENCLAW_TEST_POSTGRES_URL", "")
pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not PG_URL, reason="OPENCLAW_TEST_POSTGRES_URL is not set (CI sets it)"),
    pytest.mark.usefixtures("data_dir"),
]

GENERAL = "C0GENERAL1"
ALICE = "U0ALICE001"


def replica_config(double: SlackDouble, **slack: Any) -> Config:
    return Config.model_validate(
        {
            "storage": {"url": PG_URL},
            "limits": {"lease_s": 3},
            "access": {"dm_policy": "allowlist", "allow": [f"slack:{ALICE}"]},
            "agent": {"provider": "echo"},
            "channels": {
                "webchat": {"enabled": False},
                "slack": {
                    "bot_token": double.bot_token,
                    "app_token": double.app_token,
                    "signing_secret": double.signing_secret,
                    "api_base_url": double.api_base_url,
                    "allowed_channels": [GENERAL],
                    **slack,
                },
            },
        }
    )


@pytest.fixture
async def double(tmp_path: Path) -> AsyncIterator[SlackDouble]:
    async for store in fresh_store("postgresql", tmp_path):  # an empty schema
        await store.close()
    async with SlackDouble() as d:
        d.add_channel(GENERAL)
        yield d


def slack_health(gw: RunningGateway) -> dict[str, Any]:
    return gw.runtime.channel_health()["slack"]


async def until(cond: Any, timeout: float = 15) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.05)


async def test_one_replica_holds_socket_mode_and_hands_it_over(double: SlackDouble) -> None:
    async with running_gateway(replica_config(double)) as a:
        await double.wait_for(lambda: double.hellos == 1, 15)
        async with running_gateway(replica_config(double)) as b:
            await until(lambda: slack_health(b)["receiver"] == a.runtime.replica.id)
            assert slack_health(b)["receiving"] is False  # a standby: it sends, A receives
            assert slack_health(a)["receiving"] is True
            assert double.connected == 1 and double.hellos == 1
            await double.push(double.message("D0ALICE001", "who answers?", user=ALICE))
            await double.wait_for(lambda: len(double.posted) >= 1, 15)
            await settled(a)
            hellos = double.hellos
            await a.runtime.stop(5)  # A leaves: its lease is released at once
            await double.wait_for(lambda: double.hellos > hellos and double.connected == 1, 15)
            await until(lambda: slack_health(b)["receiver"] == b.runtime.replica.id)
            await double.push(double.message("D0ALICE001", "and now?", user=ALICE))
            await double.wait_for(lambda: len(double.posted) >= 2, 15)
            await settled(b)
    assert [p.text.rsplit(": ", 1)[-1] for p in double.posted] == ["who answers?", "and now?"]


async def test_events_api_on_any_replica_and_a_retry_on_the_other_once(
    double: SlackDouble,
) -> None:
    config = replica_config(double, mode="events")
    async with running_gateway(config) as a, running_gateway(config) as b:
        assert slack_health(a)["receiver"] == a.runtime.replica.id  # no lease: each receives
        event = double.message(GENERAL, f"<@{BOT_USER_ID}> via the load balancer", user=ALICE)
        body = double.callback(event)
        first = await double.deliver_http(f"{a.base_url}/slack/events", body, retries=False)
        retry = await double.deliver_http(f"{b.base_url}/slack/events", body, retry_num=1)
        other = double.callback(double.message(GENERAL, f"<@{BOT_USER_ID}> to B", user=ALICE))
        to_b = await double.deliver_http(f"{b.base_url}/slack/events", other)
        await double.wait_for(lambda: len(double.posted) >= 2, 15)
        await settled(a)
        await settled(b)
    assert [d.status for d in first + retry + to_b] == [200, 200, 200]
    texts = sorted(p.text.rsplit(": ", 1)[-1] for p in double.posted)
    assert texts == ["to B", "via the load balancer"]
    assert all(p.thread_ts for p in double.posted)
