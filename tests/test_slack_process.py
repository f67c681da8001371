"""Slack with a real gateway process on SQLite: killed (-9) after Slack's envelope was acked and
before the answer, the message is answered once after the restart; no token in any log line."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from tests.doubles.openai_double import OpenAIDouble, Reply
from tests.doubles.slack_double import BOT_USER_ID, SlackDouble
from tests.gw_async import (
    TOKEN,
    exited,
    kill,
    signal_and_wait,
    start_gateway,
    until,
    until_ready_says,
)
from tests.proc import clean_env

GENERAL = "C0GENERAL1"
ALICE = "U0ALICE001"


def write_config(tmp_path: Path, double: SlackDouble, model: OpenAIDouble) -> None:
    (tmp_path / "config.toml").write_text(
        "[access]\n"
        f'allow = ["slack:{ALICE}"]\n'
        "[agent]\n"
        'provider = "openai"\n'
        f'base_url = "{model.base_url}"\n'
        "stream = false\n"
        "[channels.webchat]\nenabled = false\n"
        "[channels.slack]\n"
        f'api_base_url = "{double.api_base_url}"\n'
        f'allowed_channels = ["{GENERAL}"]\n'
    )


async def test_killed_between_ack_and_answer_is_answered_once_after_restart(
    tmp_path: Path,
) -> None:
    hold = asyncio.Event()
    async with SlackDouble() as double, OpenAIDouble() as model:
        double.add_channel(GENERAL)
        model.replies.append(Reply(text="The answer, after all.", hold=hold))  # hangs
        write_config(tmp_path, double, model)
        env = clean_env(
            tmp_path / "data",
            OPENCLAW_GATEWAY_TOKEN=TOKEN,
            OPENCLAW_OPENAI_API_KEY="sk-test",
            OPENCLAW_SLACK_BOT_TOKEN=double.bot_token,
            OPENCLAW_SLACK_APP_TOKEN=double.app_token,
        )
        first = await start_gateway(env, tmp_path, "-v")  # debug: every library line too
        try:
            await double.wait_for(lambda: double.hellos >= 1, 20)
            asked = double.message(GENERAL, f"<@{BOT_USER_ID}> what is the answer?", user=ALICE)
            envelope = await double.push(asked)
            await double.wait_for(lambda: envelope.acked, 20)  # stored, then acked
            await until(lambda: len(model.requests) >= 1, "the model was asked")
            first.proc.kill()  # kill -9 while the model is still thinking
            _code, _out, first_err = await exited(first)
        finally:
            kill(first)
        assert double.posted == []
        model.default = Reply(text="The answer, after all.")
        second = await start_gateway(env, tmp_path)
        try:
            await double.wait_for(lambda: len(double.posted) >= 1, 30)
            async with aiohttp.ClientSession() as http:
                await until_ready_says(
                    http, second, lambda _s, body: body["channels"]["slack"]["state"] == "connected"
                )
            await asyncio.sleep(0.3)  # room for a second answer, if there were to be one
            code, _out, second_err = await signal_and_wait(second)
        finally:
            kill(second)
    assert code == 0, second_err[-3000:]
    (answer,) = double.posted
    assert answer.thread_ts == asked["ts"] and answer.text == "The answer, after all."
    assert envelope.attempts == 1  # acked once: Slack never had to send it again
    assert "pending_resumed" in second_err
    for log_text in (first_err, second_err):
        assert double.bot_token not in log_text and double.app_token not in log_text
    assert "apps.connections.open" in first_err  # the debug lines were really there
