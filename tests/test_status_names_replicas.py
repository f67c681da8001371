"""`open-clanker status` names this replica and the replica receiving each platform connection
(SPEC §9), as `/ready` and `/api/v1/status` do: on two real replicas sharing one bot."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.doubles.echo_model import EchoModel
from tests.doubles.telegram_double import TelegramDouble
from tests.proc import clean_env, cli
from tests.replicas_kit import TOKEN, cluster, eventually, needs_services

pytestmark = [needs_services, pytest.mark.postgres, pytest.mark.redis]


@pytest.fixture
async def model() -> AsyncIterator[EchoModel]:
    m = EchoModel()
    await m.start()
    yield m
    await m.stop()


async def test_status_names_the_replica_and_the_telegram_receiver(
    tmp_path: Path, model: EchoModel
) -> None:
    telegram = TelegramDouble()
    await telegram.start()
    try:
        async with cluster(tmp_path, 2, model.base_url, telegram_url=telegram.base_url) as c:

            async def holder() -> str | None:
                ready = await c.get(c.replicas[0], "/ready")
                receiver: str | None = ready["channels"]["telegram"]["receiver"]
                return receiver

            receiver = await eventually(holder, 15, "a replica holds the Telegram lease")
            env = clean_env(tmp_path / "cli", OPENCLAW_GATEWAY_TOKEN=TOKEN)
            shown = []
            for replica in c.replicas:
                me = (await c.get(replica, "/api/v1/status"))["replica"]
                result = cli(["status", "--gateway-url", replica.base_url], env, tmp_path)
                assert result.returncode == 0, result.stderr
                out = " ".join(result.stdout.split())  # the table may wrap long values
                assert me in out
                who = "this replica" if me == receiver else receiver
                assert f"received by {who}" in out
                shown.append(who)
            assert sorted(shown) == sorted(["this replica", receiver])  # one holds it
    finally:
        await telegram.stop()
