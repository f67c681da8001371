"""One process on SQLite: a platform message waiting behind a running turn is already stored
when Telegram's offset confirms it, so a kill -9 loses nothing (SPEC §8, "Nothing lost")."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.doubles.echo_model import EchoModel, answer_to
from tests.doubles.telegram_double import TOKEN, TelegramDouble, message, update
from tests.replicas_kit import ReplicaProcess, eventually


@pytest.fixture
async def model() -> AsyncIterator[EchoModel]:
    m = EchoModel()
    await m.start()
    yield m
    await m.stop()


@pytest.fixture
async def telegram() -> AsyncIterator[TelegramDouble]:
    d = TelegramDouble()
    await d.start()
    yield d
    await d.stop()


def config(model: EchoModel, telegram: TelegramDouble) -> str:
    return f"""\
[agent]
provider = "openai"
base_url = "{model.base_url}"
api_key_env = "TEST_MODEL_KEY"
max_retries = 0

[access]
dm_policy = "open"

[logging]
format = "json"

[channels.telegram]
bot_token = "{TOKEN}"
api_base_url = "{telegram.base_url}"
"""


async def test_kill_9_while_a_message_waits_behind_a_turn_loses_nothing(
    tmp_path: Path, model: EchoModel, telegram: TelegramDouble
) -> None:
    gw = ReplicaProcess(
        "solo", tmp_path / "gw", config(model, telegram), {"TEST_MODEL_KEY": "sk-test"}
    )
    gw.start()
    await gw.wait_ready()
    first, second = "first, slowly [slow 3]", "second, waiting its turn"
    telegram.push(update(message(first, chat_id=5)))
    await eventually(lambda: model.asked(first), 10, "the first turn reached the model")
    waiting = telegram.push(update(message(second, chat_id=5)))

    def confirmed() -> bool:
        offsets = [int(p.get("offset") or 0) for p in telegram.params_of("getUpdates")]
        return max(offsets, default=0) > waiting["update_id"]

    # Telegram has been told the second update was received (and will never send it again)
    # while the first turn is still running.
    await eventually(confirmed, 10, "the second update's offset was confirmed")
    assert not model.asked(second)
    gw.kill()
    assert telegram.sent == []  # nothing was answered before the crash

    restarted = ReplicaProcess(
        "solo-again", gw.dir, gw.config, {"TEST_MODEL_KEY": "sk-test"}, port=gw.port
    )
    restarted.start()
    try:
        await restarted.wait_ready()
        await eventually(lambda: len(telegram.sent) >= 2, 30, "both answered after restart")
        assert len(restarted.events("pending_resumed")) == 2
        texts = [s.text for s in telegram.sent if s.chat_id == 5]
        assert texts == [answer_to(first), answer_to(second)]  # once each, in order
        assert len(model.asked(second)) == 1
        # The second model call saw the first exchange: the order survived the crash.
        assert [m["content"] for m in model.asked(second)[0]] == [
            first,
            answer_to(first),
            second,
        ]
    finally:
        assert restarted.stop() == 0
