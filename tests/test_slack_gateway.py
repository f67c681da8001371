"""Slack through the whole gateway over Socket Mode: config → runtime → adapter (slack_sdk) →
Slack double, and back."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import text

from open_clanker.channels.slack import adapter
from open_clanker.channels.slack.socket import SocketTiming
from open_clanker.config.model import Config
from open_clanker.core.logging import setup_logging
from open_clanker.core.types import SessionKey
from tests.doubles.openai_double import OpenAIDouble, Reply
from tests.doubles.slack_double import BOT_USER_ID, Posted, SlackDouble
from tests.harness import RunningGateway, running_gateway, settled
from tests.proc import clean_env, cli

pytestmark = pytest.mark.usefixtures("data_dir")

GENERAL, QUIET = "C0GENERAL1", "C0QUIET001"
ALICE, BOB = "U0ALICE001", "U0BOB00001"
ALICE_DM, BOB_DM = "D0ALICE001", "D0BOB00001"
MENTION = f"<@{BOT_USER_ID}>"


def sl_config(double: SlackDouble, *, agent: dict[str, Any] | None = None, **slack: Any) -> Config:
    section = {
        "bot_token": double.bot_token,
        "app_token": double.app_token,
        "api_base_url": double.api_base_url,
        "allowed_channels": [GENERAL],
        **slack,
    }
    return Config.model_validate(
        {
            "access": {"dm_policy": "pairing", "allow": [f"slack:{ALICE}"]},
            "agent": agent or {"provider": "echo"},
            "channels": {"webchat": {"enabled": False}, "slack": section},
        }
    )


@pytest.fixture
async def double() -> AsyncIterator[SlackDouble]:
    async with SlackDouble() as d:
        d.add_channel(GENERAL)
        d.add_channel(QUIET)
        yield d


@asynccontextmanager
async def gateway(double: SlackDouble, **slack: Any) -> AsyncIterator[RunningGateway]:
    async with running_gateway(sl_config(double, **slack)) as gw:
        await double.wait_for(lambda: double.hellos >= 1, 10)
        yield gw


@asynccontextmanager
async def gateway_with_model(
    double: SlackDouble, monkeypatch: pytest.MonkeyPatch, reply: Reply, **agent: Any
) -> AsyncIterator[tuple[RunningGateway, OpenAIDouble]]:
    monkeypatch.setenv("OPENCLAW_OPENAI_API_KEY", "sk-test")
    async with OpenAIDouble() as model:
        model.default = reply
        agent = {"provider": "openai", "base_url": model.base_url, **agent}
        async with running_gateway(sl_config(double, agent=agent)) as gw:
            await double.wait_for(lambda: double.hellos >= 1, 10)
            yield gw, model


def posted_in(double: SlackDouble, channel: str) -> list[Posted]:
    return [p for p in double.posted if p.channel == channel]


async def wait_posted(double: SlackDouble, count: int, timeout: float = 10) -> None:
    await double.wait_for(lambda: len(double.posted) >= count, timeout)


async def quiet(gw: RunningGateway, double: SlackDouble) -> None:
    """Every envelope (the bot's own echoes too) acknowledged, then nothing left to do."""
    await double.wait_for(lambda: not double.unacked(), 10)
    await settled(gw)
    await double.wait_for(lambda: not double.unacked(), 10)


async def test_a_dm_is_answered_and_its_envelope_acked(
    double: SlackDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    reply = Reply(text="Hi *Alice*, the **model** speaking.")
    async with gateway_with_model(double, monkeypatch, reply, stream=False) as (gw, model):
        envelope = await double.push(double.message(ALICE_DM, "hello there", user=ALICE))
        await wait_posted(double, 1)
        await quiet(gw, double)
    (sent,) = double.posted
    assert (sent.channel, sent.thread_ts) == (ALICE_DM, None)  # a DM is answered in place
    assert sent.text == "Hi _Alice_, the *model* speaking."  # Markdown became mrkdwn
    assert sent.args["link_names"] is False
    assert envelope.acked and envelope.attempts == 1
    assert model.requests[-1].body["messages"][-1] == {"role": "user", "content": "hello there"}


async def test_channels_answer_mentions_in_a_thread_and_follow_that_thread(
    double: SlackDouble,
) -> None:
    async with gateway(double) as gw:
        await double.push(double.message(GENERAL, "just chatting", user=ALICE))
        asked = double.message(GENERAL, f"{MENTION} what is up?", user=ALICE)
        await double.push(asked)
        await wait_posted(double, 1)
        await quiet(gw, double)
        (first,) = double.posted
        assert first.thread_ts == asked["ts"]  # the answer starts a thread under the question
        assert first.text.endswith("You said: what is up?")  # the mention was taken out
        # In that thread, no mention is needed: the bot already answered there.
        await double.push(double.message(GENERAL, "and then?", user=ALICE, thread_ts=asked["ts"]))
        await wait_posted(double, 2)
        # A thread the bot never answered in is left alone, and so is another bot.
        await double.push(double.message(GENERAL, "side talk", user=BOB, thread_ts="1.000001"))
        await double.push(
            double.message(GENERAL, f"{MENTION} hi", user="U0OTHERBOT", bot_id="B0OTHERBOT")
        )
        await quiet(gw, double)
        second = double.posted[1]
        assert (second.thread_ts, second.text.endswith("You said: and then?")) == (
            asked["ts"],
            True,
        )
        assert len(double.posted) == 2
        history = await gw.runtime.store.messages.session_messages(
            SessionKey(f"slack:{GENERAL}:{asked['ts']}"), 50
        )
        assert history is not None
        assert [m.text for m in history if m.role.value == "user"] == ["what is up?", "and then?"]


async def test_commands_follow_a_mention(double: SlackDouble) -> None:
    async with gateway(double) as gw:
        asked = double.message(GENERAL, f"{MENTION} /status", user=ALICE)
        await double.push(asked)
        await wait_posted(double, 1)
        await quiet(gw, double)
    (answer,) = double.posted
    assert answer.thread_ts == asked["ts"]
    assert answer.text.startswith("Model: echo")


async def test_only_allowed_channels_are_answered(double: SlackDouble) -> None:
    async with gateway(double) as gw:
        await double.push(double.message(QUIET, f"{MENTION} over here?", user=BOB))
        await double.push(double.message(GENERAL, f"{MENTION} and here?", user=BOB))
        await wait_posted(double, 1)
        await quiet(gw, double)
    assert [p.channel for p in double.posted] == [GENERAL]


async def test_thread_memory_survives_a_restart(double: SlackDouble) -> None:
    asked = double.message(GENERAL, f"{MENTION} remember this thread", user=ALICE)
    async with gateway(double) as gw:
        await double.push(asked)
        await wait_posted(double, 1)
        await quiet(gw, double)
    hellos = double.hellos
    async with running_gateway(sl_config(double)) as gw:
        await double.wait_for(lambda: double.hellos > hellos, 10)
        await double.push(
            double.message(GENERAL, "still there?", user=ALICE, thread_ts=asked["ts"])
        )
        await wait_posted(double, 2)
        await quiet(gw, double)
    assert double.posted[1].thread_ts == asked["ts"]
    assert double.posted[1].text.endswith("You said: still there?")


async def test_a_stranger_in_a_dm_gets_a_pairing_code_then_answers(double: SlackDouble) -> None:
    async with gateway(double) as gw:
        await double.push(double.message(BOB_DM, "hello?", user=BOB))
        await wait_posted(double, 1)
        await quiet(gw, double)
        code = re.search(r"pairing code is ([A-Z2-9]{8})", double.posted[0].text)
        assert code is not None and double.posted[0].channel == BOB_DM
        await double.push(double.message(BOB_DM, "hello again?", user=BOB))
        await quiet(gw, double)
        assert len(double.posted) == 1  # the same code is not sent again at once
        assert await gw.runtime.store.access.approve(code.group(1), 1.0) is not None
        await double.push(double.message(BOB_DM, "now?", user=BOB))
        await wait_posted(double, 2)
        await quiet(gw, double)
    assert double.posted[1].text.endswith("You said: now?")


async def test_a_long_reply_with_code_arrives_as_closed_parts_in_order(
    double: SlackDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    prose = "\n\n".join(f"Paragraph {i}: " + "plain words in a sentence. " * 20 for i in range(8))
    code = "\n".join(f"    value_{i} = compute({i}) * 2  # step {i}" for i in range(100))
    answer = f"{prose}\n\n```python\n{code}\n```\n\nThat is all."
    async with gateway_with_model(double, monkeypatch, Reply(text=answer), stream=False) as (gw, _):
        asked = double.message(GENERAL, f"{MENTION} write it all", user=ALICE)
        await double.push(asked)
        await wait_posted(double, 3)
        await quiet(gw, double)
    parts = double.posted
    assert len(parts) == 3
    assert all(len(p.text) <= 4000 for p in parts)
    assert all(p.thread_ts == asked["ts"] for p in parts)
    assert [p.ts for p in parts] == sorted(p.ts for p in parts)
    assert parts[0].text.startswith("Paragraph 0:") and parts[2].text.endswith("That is all.")
    for part in parts:
        assert sum(line == "```" for line in part.text.split("\n")) % 2 == 0
    steps = [int(n) for p in parts for n in re.findall(r"# step (\d+)", p.text)]
    assert steps == list(range(100))


async def test_reply_streams_as_one_message_edited_in_place(
    double: SlackDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    answer = "Here is **the** answer, streamed slowly for the draft to show up in the chat."
    reply = Reply(text=answer, delta_delay_s=0.12)
    async with gateway_with_model(double, monkeypatch, reply, stream=True) as (gw, _):
        await double.push(double.message(ALICE_DM, "stream it", user=ALICE))
        final = answer.replace("**the**", "*the*")
        await double.wait_for(lambda: bool(double.posted) and double.posted[0].text == final, 15)
        await quiet(gw, double)
    (message,) = double.posted  # one message: the draft, edited into the final answer
    assert message.args["text"].endswith("…")  # posted as a draft with its cursor
    assert message.edits and message.edits[-1] == final
    updates = [c for c in double.calls if c.method == "chat.update"]
    assert all(c.args["ts"] == message.ts for c in updates)


async def test_a_redelivered_or_repeated_event_is_answered_once(double: SlackDouble) -> None:
    async with gateway(double) as gw:
        event = double.message(ALICE_DM, "only once", user=ALICE)
        envelope = await double.push(event)
        await wait_posted(double, 1)
        await quiet(gw, double)
        await double.redeliver(envelope)  # Slack saw no ack in time and sends it again
        await double.push(dict(event))  # the same message in a new envelope
        await quiet(gw, double)
        await double.push(double.message(ALICE_DM, "next", user=ALICE))
        await wait_posted(double, 2)
        await quiet(gw, double)
    assert [p.text.rsplit(": ", 1)[-1] for p in double.posted] == ["only once", "next"]
    assert envelope.attempts == 2 and envelope.acked


async def test_429_and_5xx_are_retried_through_the_outbox_in_order(double: SlackDouble) -> None:
    double.fail_next("chat.postMessage", status=429, retry_after=1)
    double.fail_next("chat.postMessage", status=503)
    async with gateway(double) as gw:
        await double.push(double.message(ALICE_DM, "first", user=ALICE))
        await double.push(double.message(ALICE_DM, "second", user=ALICE))
        for attempt in (1, 2):
            await double.wait_for(lambda n=attempt: post_calls(double) >= n, 10)  # type: ignore[misc]
            while await gw.runtime.store.db.read(_attempts) < attempt:
                await asyncio.sleep(0.01)
            await gw.runtime.store.db.write(_due_now)  # the retry is scheduled; make it due
            gw.runtime.outbox.wake()
        await wait_posted(double, 2)
        await quiet(gw, double)
    assert [p.text.rsplit(": ", 1)[-1] for p in double.posted] == ["first", "second"]
    assert post_calls(double) == 4  # two refused, then both delivered, in order


def post_calls(double: SlackDouble) -> int:
    return sum(c.method == "chat.postMessage" for c in double.calls)


def _attempts(conn: Any) -> int:
    return int(conn.execute(text("SELECT COALESCE(MAX(attempts), 0) FROM outbox")).scalar_one())


def _due_now(conn: Any) -> None:
    conn.execute(text("UPDATE outbox SET next_attempt_at = 0 WHERE status = 'pending'"))


async def test_nothing_the_model_writes_pings_the_channel(
    double: SlackDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    answer = "<!channel> <!here> <!everyone> <@U0BOB00001> @here @channel look & see"
    async with gateway_with_model(double, monkeypatch, Reply(text=answer), stream=False) as (gw, _):
        await double.push(double.message(GENERAL, f"{MENTION} ping", user=ALICE))
        await wait_posted(double, 1)
        await quiet(gw, double)
    (sent,) = double.posted
    assert "<!" not in sent.text and "<@" not in sent.text
    assert sent.text.startswith("&lt;!channel&gt; &lt;!here&gt;")
    assert sent.args["link_names"] is False  # plain @here / @channel stay plain text


async def test_send_command_posts_to_a_channel(double: SlackDouble, tmp_path: Path) -> None:
    async with gateway(double) as gw:
        env = clean_env(
            tmp_path / "cli-data", OPENCLAW_GATEWAY_URL=gw.base_url, OPENCLAW_GATEWAY_TOKEN=gw.token
        )
        args = ["send", "--channel", "slack", "--channel-id", QUIET, "--message"]
        done = await asyncio.to_thread(cli, [*args, "Operator says **hi**"], env, tmp_path)
        assert done.returncode == 0, done.stderr
        await wait_posted(double, 1)
        bad = await asyncio.to_thread(
            cli,
            ["send", "--channel", "slack", "--channel-id", "#general", "--message", "x"],
            env,
            tmp_path,
        )
        await quiet(gw, double)
    assert (double.posted[0].channel, double.posted[0].text) == (QUIET, "Operator says *hi*")
    assert bad.returncode != 0
    assert "is not a Slack channel id" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    assert len(double.posted) == 1


async def test_ready_and_status_show_the_channel(double: SlackDouble) -> None:
    async with gateway(double) as gw, aiohttp.ClientSession() as http:
        async with http.get(f"{gw.base_url}/ready") as r:
            ready = await r.json()
        async with http.get(f"{gw.base_url}/api/v1/status", headers=gw.auth) as r:
            status = await r.json()
    assert ready["status"] == "ready"
    assert ready["channels"]["slack"]["state"] == "connected"
    assert ready["channels"]["slack"]["last_contact"] is not None
    assert status["channels"]["slack"]["state"] == "connected"
    for secret in (double.bot_token, double.app_token):
        assert secret not in json.dumps(status)


async def degraded(gw: RunningGateway) -> dict[str, Any]:
    for _ in range(1000):
        health = gw.runtime.channel_health()["slack"]
        if health["state"] == "degraded":
            return health
        await asyncio.sleep(0.01)
    raise AssertionError("the channel never reported degraded")


@pytest.mark.parametrize(
    ("slack", "says", "hidden"),
    [
        ({"bot_token": "xoxb-0-0-wrong-bot-token"}, "OPENCLAW_SLACK_BOT_TOKEN", "wrong-bot-token"),
        (
            {"app_token": "xapp-1-A0-0-wrong-app-token"},
            "OPENCLAW_SLACK_APP_TOKEN",
            "wrong-app-token",
        ),
    ],
)
async def test_a_refused_token_is_named_in_ready(
    double: SlackDouble, slack: dict[str, Any], says: str, hidden: str
) -> None:
    async with running_gateway(sl_config(double, **slack)) as gw, aiohttp.ClientSession() as http:
        await degraded(gw)
        async with http.get(f"{gw.base_url}/ready") as r:
            ready = await r.json()
    detail = ready["channels"]["slack"]["detail"]
    assert ready["status"] == "degraded"
    assert says in detail and "invalid_auth" in detail
    assert hidden not in detail


async def test_a_missing_scope_on_send_degrades_the_channel_and_names_it(
    double: SlackDouble,
) -> None:
    double.fail_next("chat.postMessage", error="missing_scope", needed="chat:write")
    async with gateway(double) as gw:
        await double.push(double.message(ALICE_DM, "hi", user=ALICE))
        health = await degraded(gw)
        assert "chat:write" in str(health["detail"]) and "reinstall" in str(health["detail"])
        await gw.runtime.store.db.write(_due_now)
        gw.runtime.outbox.wake()
        await wait_posted(double, 1)  # fixed (the scope added): the reply still arrives
        await quiet(gw, double)


@pytest.fixture
def json_log_file(tmp_path: Path, restore_logging: None) -> Path:
    path = tmp_path / "gateway.log"
    setup_logging("info", "json", str(path))
    return path


async def test_refresh_and_drop_reconnect_with_one_log_line_each(
    double: SlackDouble, json_log_file: Path
) -> None:
    async with gateway(double) as gw:
        await double.request_refresh()
        await double.wait_for(lambda: double.hellos >= 2, 10)
        await double.drop()
        await double.wait_for(lambda: double.hellos >= 3 and double.connected == 1, 10)
        await double.push(double.message(ALICE_DM, "after two reconnects", user=ALICE))
        await wait_posted(double, 1)
        await quiet(gw, double)
    lines = [json.loads(line) for line in json_log_file.read_text().splitlines()]
    events = [line["event"] for line in lines]
    assert events.count("slack_connected") == 1
    reconnects = [line for line in lines if line["event"] == "slack_reconnected"]
    assert [r["reason"] for r in reconnects] == ["refresh_requested", "connection closed"]
    raw = json_log_file.read_text()
    assert "Traceback" not in raw
    for secret in (double.bot_token, double.app_token):
        assert secret not in raw


async def test_a_silent_connection_is_reported_degraded_and_recovers(
    double: SlackDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast = SocketTiming(ping_interval_s=0.2, watch_interval_s=0.1, stall_after_s=1.5)
    monkeypatch.setattr(adapter, "DEFAULT_TIMING", adapter.SlackTiming(socket=fast))
    async with gateway(double) as gw:
        async with double.zombie():
            health = await degraded(gw)
            assert "Socket Mode" in str(health["detail"])
            envelope = await double.push(double.message(ALICE_DM, "while silent", user=ALICE))
        await wait_posted(double, 1, timeout=15)
        await quiet(gw, double)
        assert gw.runtime.channel_health()["slack"]["state"] == "connected"
    assert double.posted[0].text.endswith("You said: while silent")
    assert envelope.acked
