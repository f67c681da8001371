"""Discord through the whole gateway: config → runtime → adapter (discord.py) → Discord double."""

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

from open_clanker.channels.discord import adapter
from open_clanker.config.model import Config
from open_clanker.core.logging import setup_logging
from open_clanker.core.types import SessionKey
from tests.doubles.discord_double import BOT_ID, DiscordDouble
from tests.doubles.openai_double import OpenAIDouble, Reply
from tests.harness import RunningGateway, running_gateway, settled
from tests.proc import clean_env, cli

pytestmark = pytest.mark.usefixtures("data_dir")

GUILD, GENERAL, QUIET, THREAD = 500, 501, 502, 503
OTHER_GUILD, OTHER_CHANNEL = 600, 601
ALICE, BOB, DM, BOB_DM, OTHER_BOT = 700, 701, 800, 801, 702
FENCE = re.compile(r"^\s*```", re.MULTILINE)


def dc_config(
    double: DiscordDouble,
    *,
    agent: dict[str, Any] | None = None,
    access: dict[str, Any] | None = None,
    **discord: Any,
) -> Config:
    section = {
        "bot_token": double.token,
        "api_base_url": double.api_base_url,
        "allowed_channels": [GENERAL],
        **discord,
    }
    return Config.model_validate(
        {
            "access": access or {"dm_policy": "pairing", "allow": [f"discord:{ALICE}"]},
            "agent": agent or {"provider": "echo"},
            "channels": {"webchat": {"enabled": False}, "discord": section},
        }
    )


@pytest.fixture
async def double() -> AsyncIterator[DiscordDouble]:
    async with DiscordDouble(heartbeat_interval_ms=1000) as d:
        await d.add_user(ALICE, "alice")
        await d.add_user(BOB, "bob")
        await d.add_guild(GUILD, "home", [(GENERAL, "general"), (QUIET, "quiet")])
        await d.add_thread(GUILD, GENERAL, THREAD, "a thread")
        await d.add_guild(OTHER_GUILD, "elsewhere", [(OTHER_CHANNEL, "general")])
        yield d


@asynccontextmanager
async def gateway_with_model(
    double: DiscordDouble, monkeypatch: pytest.MonkeyPatch, reply: Reply, **agent: Any
) -> AsyncIterator[tuple[RunningGateway, OpenAIDouble]]:
    """The gateway with an OpenAI-compatible model double that answers `reply`."""
    monkeypatch.setenv("OPENCLAW_OPENAI_API_KEY", "sk-test")
    async with OpenAIDouble() as model:
        model.default = reply
        config = dc_config(
            double, agent={"provider": "openai", "base_url": model.base_url, **agent}
        )
        async with running_gateway(config) as gw:
            await double.wait_identified(timeout=10)
            yield gw, model


@asynccontextmanager
async def echo_gateway(double: DiscordDouble, **discord: Any) -> AsyncIterator[RunningGateway]:
    async with running_gateway(dc_config(double, **discord)) as gw:
        await double.wait_identified(timeout=10)
        yield gw


def replies_in(double: DiscordDouble, channel: int) -> list[str]:
    return [s.content for s in double.sent if s.channel_id == channel]


def mention(user_id: int = BOT_ID) -> str:
    return f"<@{user_id}>"


async def test_a_dm_is_answered_with_the_models_text(
    double: DiscordDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    reply = Reply(text="Hi Alice, the model speaking.")
    async with gateway_with_model(double, monkeypatch, reply, stream=False) as (gw, model):
        incoming = await double.dispatch_message(DM, "hello there", author_id=ALICE)
        sent = await double.wait_sent(timeout=10)
        await settled(gw)
    assert sent.channel_id == DM
    assert sent.content == "Hi Alice, the model speaking."
    assert sent.message_reference is not None
    assert str(sent.message_reference["message_id"]) == incoming["id"]
    assert len(double.sent) == 1
    assert model.requests[-1].body["messages"][-1] == {"role": "user", "content": "hello there"}
    assert DM in double.typing  # "typing…" while the model worked


async def test_guild_channel_answers_only_when_mentioned_or_replied_to(
    double: DiscordDouble,
) -> None:
    async with echo_gateway(double) as gw:
        await double.dispatch_message(GENERAL, "just chatting", author_id=ALICE)
        await settled(gw)
        assert replies_in(double, GENERAL) == []
        asked = await double.dispatch_message(
            GENERAL, f"{mention()} what is up?", author_id=ALICE, mentions=[BOT_ID]
        )
        first = await double.wait_sent(timeout=10)
        await settled(gw)
        # The mention was taken out before the model saw the text.
        assert first.content.endswith("You said: what is up?")
        assert first.message_reference is not None
        assert str(first.message_reference["message_id"]) == asked["id"]
        # A reply to the bot's answer counts as addressing it, without a mention.
        await double.dispatch_message(
            GENERAL, "and then?", author_id=ALICE, reply_to_message_id=first.message_id
        )
        await double.wait_sent(2, timeout=10)
        await settled(gw)
        assert replies_in(double, GENERAL)[1].endswith("You said: and then?")
        assert len(replies_in(double, GENERAL)) == 2
        stored = await gw.runtime.store.messages.session_messages(
            SessionKey(f"discord:{GENERAL}"), 50
        )
        assert stored is not None
        user_turns = [m for m in stored if m.role.value == "user"]
        assert user_turns[-1].metadata.reply_to == str(first.message_id)
        assert user_turns[0].metadata.mentions == (str(BOT_ID),)


async def test_channels_and_guilds_outside_the_config_are_ignored(double: DiscordDouble) -> None:
    async with echo_gateway(double, guild_id=str(GUILD)) as gw:
        await double.dispatch_message(QUIET, f"{mention()} hi", author_id=ALICE, mentions=[BOT_ID])
        await double.dispatch_message(
            OTHER_CHANNEL, f"{mention()} hi", author_id=ALICE, mentions=[BOT_ID]
        )
        await double.dispatch_message(
            GENERAL, f"{mention()} from a bot", author_id=BOT_ID, mentions=[BOT_ID]
        )
        # A thread of an allowed channel is allowed, and is its own conversation.
        await double.dispatch_message(
            THREAD, f"{mention()} in the thread", author_id=ALICE, mentions=[BOT_ID]
        )
        await double.wait_sent(timeout=10)
        await settled(gw)
        assert [s.channel_id for s in double.sent] == [THREAD]
        sessions = await gw.runtime.store.messages.list_sessions(50)
        assert [s.key for s in sessions] == [f"discord:{THREAD}"]


async def test_a_stranger_in_a_dm_gets_a_pairing_code_and_nothing_else(
    double: DiscordDouble,
) -> None:
    async with echo_gateway(double) as gw:
        await double.dispatch_message(BOB_DM, "hello?", author_id=BOB)
        sent = await double.wait_sent(timeout=10)
        await settled(gw)
        assert sent.channel_id == BOB_DM
        code = re.search(r"pairing code is ([A-Z2-9]{8})", sent.content)
        assert code is not None
        pending = await gw.runtime.store.access.pending_codes(0, "discord")
        assert [c.sender for c in pending] == [str(BOB)]
        approved = await gw.runtime.store.access.approve(code.group(1), 1.0)
        assert approved is not None
        await double.dispatch_message(BOB_DM, "now?", author_id=BOB)
        second = await double.wait_sent(2, timeout=10)
        assert second.content.endswith("You said: now?")


async def test_a_5000_character_reply_with_code_arrives_as_three_valid_messages(
    double: DiscordDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    intro = "Here is the plan in detail. " * 30
    code = "\n".join(f"    total += compute(item_{i})  # step {i} of the loop" for i in range(50))
    outro = "That is all there is to it, really. " * 42
    text = f"{intro.strip()}\n\n```python\ndef run():\n{code}\n```\n\n{outro.strip()}"
    assert len(text) > 5000
    async with gateway_with_model(double, monkeypatch, Reply(text=text), stream=False) as (gw, _):
        asked = await double.dispatch_message(DM, "write it all", author_id=ALICE)
        await double.wait_sent(3, timeout=10)
        await settled(gw)
    parts = replies_in(double, DM)
    assert len(parts) == 3
    assert all(len(p) <= 2000 for p in parts)
    assert all(len(FENCE.findall(p)) % 2 == 0 for p in parts)  # every part's code is closed
    assert parts[0].startswith("Here is the plan") and parts[2].endswith("really.")
    ids = [s.message_id for s in double.sent]
    assert ids == sorted(ids)  # delivered in order
    references = [s.message_reference for s in double.sent]
    assert references[0] is not None and str(references[0]["message_id"]) == asked["id"]
    assert references[1:] == [None, None]  # only the first part quotes the user


async def test_everyone_in_the_models_text_pings_no_one(
    double: DiscordDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = f"@everyone @here <@&{GUILD}> <@{BOB}> look at this!"
    async with gateway_with_model(double, monkeypatch, Reply(text=text), stream=False) as (gw, _):
        await double.dispatch_message(
            GENERAL, f"{mention()} ping", author_id=ALICE, mentions=[BOT_ID]
        )
        sent = await double.wait_sent(timeout=10)
        await settled(gw)
    assert sent.content == text
    # Discord pings only what allowed_mentions allows: no parse types, no users, no roles.
    assert sent.allowed_mentions == {"parse": [], "replied_user": True}


async def test_429_and_5xx_are_retried_through_the_outbox(double: DiscordDouble) -> None:
    # A wait longer than discord.py's own limit (30 s) comes back to our outbox as RateLimited;
    # a 503 is not retried by discord.py at all.
    double.fail_next("POST", "/channels/*/messages", 429, retry_after=45.0)
    double.fail_next("POST", "/channels/*/messages", 503)
    async with echo_gateway(double) as gw:
        await double.dispatch_message(DM, "are you there?", author_id=ALICE)
        for attempt in (1, 2):
            await double.wait_for(lambda n=attempt: message_posts(double) >= n, 10)  # type: ignore[misc]
            while await gw.runtime.store.db.read(_attempts) < attempt:
                await asyncio.sleep(0.01)
            # The retry is scheduled (45 s for the 429); make it due now.
            await gw.runtime.store.db.write(_due_now)
            gw.runtime.outbox.wake()
        sent = await double.wait_sent(timeout=10)
        await settled(gw)
    assert sent.content.endswith("You said: are you there?")
    assert len(double.sent) == 1
    assert message_posts(double) == 3


def message_posts(double: DiscordDouble) -> int:
    return sum(r.method == "POST" and r.path.endswith("/messages") for r in double.requests)


def _attempts(conn: Any) -> int:
    return int(conn.execute(text("SELECT COALESCE(MAX(attempts), 0) FROM outbox")).scalar_one())


def _due_now(conn: Any) -> None:
    conn.execute(text("UPDATE outbox SET next_attempt_at = 0 WHERE status = 'pending'"))


async def test_send_command_posts_to_a_channel(double: DiscordDouble, tmp_path: Path) -> None:
    async with echo_gateway(double) as gw:
        env = clean_env(
            tmp_path / "cli-data",
            OPENCLAW_GATEWAY_URL=gw.base_url,
            OPENCLAW_GATEWAY_TOKEN=gw.token,
        )
        args = ["send", "--channel", "discord", "--channel-id", str(QUIET)]
        done = await asyncio.to_thread(
            cli, [*args, "--message", "Operator says hi @everyone"], env, tmp_path
        )
        assert done.returncode == 0, done.stderr
        sent = await double.wait_sent(timeout=10)
        bad = await asyncio.to_thread(
            cli,
            ["send", "--channel", "discord", "--channel-id", "general", "--message", "x"],
            env,
            tmp_path,
        )
        await settled(gw)
    assert (sent.channel_id, sent.content) == (QUIET, "Operator says hi @everyone")
    assert sent.allowed_mentions == {"parse": [], "replied_user": True}
    # A channel id that cannot exist is refused at once, in one line.
    assert bad.returncode != 0
    assert "'general' is not a Discord channel id" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    assert len(double.sent) == 1


async def test_ready_and_status_show_the_channel(double: DiscordDouble) -> None:
    async with echo_gateway(double) as gw, aiohttp.ClientSession() as http:
        async with http.get(f"{gw.base_url}/ready") as r:
            ready = await r.json()
        async with http.get(f"{gw.base_url}/api/v1/status", headers=gw.auth) as r:
            status = await r.json()
    assert ready["channels"]["discord"]["state"] == "connected"
    assert ready["channels"]["discord"]["last_contact"] is not None
    assert status["channels"]["discord"]["state"] == "connected"
    assert double.token not in json.dumps(status)


async def test_a_refused_message_content_intent_is_named(double: DiscordDouble) -> None:
    double.privileged_intents_allowed = False
    async with running_gateway(dc_config(double)) as gw, aiohttp.ClientSession() as http:
        for _ in range(500):
            if gw.runtime.channel_health()["discord"]["state"] == "degraded":
                break
            await asyncio.sleep(0.01)
        async with http.get(f"{gw.base_url}/ready") as r:
            ready = await r.json()
    detail = ready["channels"]["discord"]["detail"]
    assert ready["channels"]["discord"]["state"] == "degraded"
    assert "Message Content" in detail


async def test_a_refused_token_is_named(double: DiscordDouble) -> None:
    config = dc_config(double, bot_token="MTE.wrong.token-that-discord-refuses")
    async with running_gateway(config) as gw:
        for _ in range(500):
            if gw.runtime.channel_health()["discord"]["state"] == "degraded":
                break
            await asyncio.sleep(0.01)
        detail = str(gw.runtime.channel_health()["discord"]["detail"])
    assert "refused the bot token" in detail
    assert "wrong.token" not in detail


async def test_a_dropped_connection_resumes_and_nothing_is_answered_twice(
    double: DiscordDouble,
) -> None:
    async with echo_gateway(double) as gw:
        first = await double.dispatch_message(DM, "before the drop", author_id=ALICE)
        await double.wait_sent(timeout=10)
        await settled(gw)
        async with double.outage():
            await double.dispatch_message(DM, "during the drop", author_id=ALICE)
        resume = await double.wait_resumed(timeout=15)
        assert resume.replayed >= 1
        await double.wait_sent(2, timeout=10)
        # Discord may deliver an event twice (e.g. a replica race): still one answer.
        await double.dispatch_message(
            DM, "before the drop", author_id=ALICE, message_id=int(first["id"])
        )
        await double.dispatch_message(DM, "after", author_id=ALICE)
        await double.wait_sent(3, timeout=10)
        await settled(gw)
        assert [c.rsplit(": ", 1)[-1] for c in replies_in(double, DM)] == [
            "before the drop",
            "during the drop",
            "after",
        ]
        assert len(double.identifies) == 1  # resumed, not a fresh session
        assert gw.runtime.channel_health()["discord"]["state"] == "connected"


async def test_reply_streams_as_an_edited_draft(
    double: DiscordDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    answer = "Here is the answer, streamed slowly for the draft to show up in the chat."
    words = answer.split(" ")
    reply = Reply(text=answer, delta_delay_s=0.12)
    async with gateway_with_model(double, monkeypatch, reply, stream=True) as (gw, _):
        await double.dispatch_message(DM, "stream it", author_id=ALICE)
        await double.wait_for(lambda: bool(double.edits) and double.edits[-1].content == answer, 15)
        await settled(gw)
    assert len(words) > 5
    assert len(double.sent) == 1  # the draft, later edited into the final answer
    assert double.sent[0].content.endswith("…")
    assert double.edits[-1].message_id == double.sent[0].message_id


async def test_attachments_and_other_bots(double: DiscordDouble) -> None:
    await double.add_user(OTHER_BOT, "otherbot", bot=True)
    async with echo_gateway(double) as gw:
        await double.dispatch_message(DM, "from another bot", author_id=OTHER_BOT)
        picture = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
        incoming = await double.dispatch_message(
            DM, "what is this?", author_id=ALICE, attachments=[("cat.png", picture)]
        )
        await double.wait_sent(timeout=10)
        await settled(gw)
        stored = await gw.runtime.store.messages.session_messages(SessionKey(f"discord:{DM}"), 50)
    assert [s.channel_id for s in double.sent] == [DM]
    assert stored is not None
    user_turns = [m for m in stored if m.role.value == "user"]
    assert [m.text for m in user_turns] == ["what is this?"]
    (attachment,) = user_turns[0].metadata.attachments
    expected = incoming["attachments"][0]
    assert attachment.url == expected["url"]
    assert attachment.mime_type == "image/png"
    assert attachment.size_bytes == len(picture)
    assert attachment.name == "cat.png"


async def test_a_stalled_connection_is_restarted_and_reported_degraded(
    double: DiscordDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    # discord.py's watchdog restarts a connection that has been silent this long.
    monkeypatch.setattr(adapter, "DEFAULT_TIMING", adapter.ConnectTiming(heartbeat_timeout_s=2.0))
    async with echo_gateway(double) as gw:
        health = gw.runtime.channel_health
        assert health()["discord"]["state"] == "connected"
        async with double.zombie():
            await double.wait_for(lambda: not double.connected, 15)
            for _ in range(500):
                if health()["discord"]["state"] == "degraded":
                    break
                await asyncio.sleep(0.01)
            assert health()["discord"]["state"] == "degraded"
            assert "reconnecting" in str(health()["discord"]["detail"])
            await double.dispatch_message(DM, "while stalled", author_id=ALICE)
        resume = await double.wait_resumed(timeout=15)
        assert resume.replayed >= 1
        sent = await double.wait_sent(timeout=10)
        await settled(gw)
        assert sent.content.endswith("You said: while stalled")
        assert health()["discord"]["state"] == "connected"
        assert len(double.identifies) == 1


@pytest.fixture
def json_log_file(tmp_path: Path, restore_logging: None) -> Path:
    """The gateway's logging as in production: JSON lines to a file."""
    path = tmp_path / "gateway.log"
    setup_logging("info", "json", str(path))
    return path


async def test_reconnects_and_resumes_are_one_log_line_each(
    double: DiscordDouble, json_log_file: Path
) -> None:
    async with echo_gateway(double):
        await double.wait_for(lambda: double.connected, 10)
        await double.drop_connection()
        await double.wait_resumed(1, timeout=15)
        await double.request_reconnect()
        await double.wait_resumed(2, timeout=15)
    lines = json_log_file.read_text().splitlines()
    events = [json.loads(line)["event"] for line in lines]
    assert events.count("discord_connected") == 1
    assert events.count("discord_disconnected") == 2
    assert events.count("discord_resumed") == 2
    # discord.py's own reconnect traceback and INFO chatter stay out; so does the token.
    text_all = "\n".join(lines)
    assert "Traceback" not in text_all and "Attempting a reconnect" not in text_all
    assert "RESUMED session" not in text_all
    assert double.token not in text_all


async def test_without_require_mention_every_message_in_an_allowed_channel_is_answered(
    double: DiscordDouble,
) -> None:
    async with echo_gateway(double, require_mention=False) as gw:
        await double.dispatch_message(GENERAL, "no mention needed", author_id=BOB)
        sent = await double.wait_sent(timeout=10)
        await double.dispatch_message(QUIET, "but not here", author_id=BOB)
        await settled(gw)
    assert sent.content.endswith("You said: no mention needed")
    assert [s.channel_id for s in double.sent] == [GENERAL]


async def test_an_allowed_or_paired_sender_does_not_open_a_channel_that_is_not_allowed(
    double: DiscordDouble,
) -> None:
    # No allowed_channels filter at the adapter: access alone decides (SPEC §4.4).
    async with echo_gateway(double, allowed_channels=[]) as gw:
        await gw.runtime.store.access.allow("discord", str(BOB), "pairing")
        await double.dispatch_message(
            GENERAL, f"{mention()} hi from alice", author_id=ALICE, mentions=[BOT_ID]
        )
        await double.dispatch_message(
            QUIET, f"{mention()} hi from bob", author_id=BOB, mentions=[BOT_ID]
        )
        await double.dispatch_message(DM, "and in a dm", author_id=ALICE)
        sent = await double.wait_sent(timeout=10)
        await settled(gw)
    assert [s.channel_id for s in double.sent] == [DM]
    assert sent.content.endswith("You said: and in a dm")


async def test_a_channel_in_access_allow_is_answered_and_its_threads_follow_it(
    double: DiscordDouble,
) -> None:
    access = {"dm_policy": "allowlist", "allow": [f"discord:{GENERAL}"]}
    config = dc_config(double, access=access, allowed_channels=[])
    async with running_gateway(config) as gw:
        await double.wait_identified(timeout=10)
        # BOB is allowed nowhere; the channel (and the thread under it) is.
        await double.dispatch_message(
            THREAD, f"{mention()} in the thread", author_id=BOB, mentions=[BOT_ID]
        )
        await double.dispatch_message(
            QUIET, f"{mention()} not here", author_id=BOB, mentions=[BOT_ID]
        )
        await double.dispatch_message(
            GENERAL, f"{mention()} in general", author_id=BOB, mentions=[BOT_ID]
        )
        await double.wait_sent(2, timeout=10)
        await settled(gw)
    assert sorted(s.channel_id for s in double.sent) == sorted([THREAD, GENERAL])


async def test_open_policy_answers_any_channel_when_addressed(double: DiscordDouble) -> None:
    config = dc_config(double, access={"dm_policy": "open"}, allowed_channels=[])
    async with running_gateway(config) as gw:
        await double.wait_identified(timeout=10)
        await double.dispatch_message(QUIET, "chatter, not for the bot", author_id=BOB)
        await double.dispatch_message(
            OTHER_CHANNEL, f"{mention()} anyone?", author_id=BOB, mentions=[BOT_ID]
        )
        sent = await double.wait_sent(timeout=10)
        await settled(gw)
    assert [s.channel_id for s in double.sent] == [OTHER_CHANNEL]
    assert sent.content.endswith("You said: anyone?")
