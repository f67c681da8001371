"""The Discord double driven by discord.py itself: a real `discord.Client` against loopback."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import warnings
from collections.abc import AsyncIterator
from typing import Any

import pytest

with warnings.catch_warnings():  # discord.py imports the deprecated audioop
    warnings.filterwarnings("ignore", "'audioop' is deprecated", DeprecationWarning)
    import discord

from tests.doubles.discord_double import BOT_ID, DiscordDouble, point_discord_py_at

GUILD = 1300000000000000001
GENERAL = 1300000000000000011
THREAD = 1300000000000000021
DM = 1300000000000000031
ALICE = 1400000000000000001
INTENTS = discord.Intents(guilds=True, guild_messages=True, dm_messages=True, message_content=True)


class Bot(discord.Client):
    """A plain client that queues what it receives: others' messages apart from its own."""

    def __init__(self, **options: Any) -> None:
        options.setdefault("intents", INTENTS)
        super().__init__(guild_ready_timeout=0.05, **options)
        self.inbox: asyncio.Queue[discord.Message] = asyncio.Queue()
        self.own: asyncio.Queue[discord.Message] = asyncio.Queue()
        self.ready = asyncio.Event()
        self.resumed = asyncio.Event()

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """discord.py's default sleeps 5 s before every IDENTIFY but the first."""

    async def on_ready(self) -> None:
        self.ready.set()

    async def on_resumed(self) -> None:
        self.resumed.set()

    async def on_message(self, message: discord.Message) -> None:
        mine = self.user is not None and message.author.id == self.user.id
        (self.own if mine else self.inbox).put_nowait(message)

    async def next_message(self, *, own: bool = False) -> discord.Message:
        return await asyncio.wait_for((self.own if own else self.inbox).get(), 5)


@contextlib.asynccontextmanager
async def running(double: DiscordDouble, **options: Any) -> AsyncIterator[Bot]:
    """A started client, READY with the double's guilds cached; closed on the way out."""
    bot = Bot(**options)
    task = asyncio.create_task(bot.start(double.token))
    waiter = asyncio.ensure_future(bot.ready.wait())
    try:
        await asyncio.wait({task, waiter}, timeout=5, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()  # raises what stopped it
        assert bot.ready.is_set(), "the client did not get READY in time"
        yield bot
    finally:
        waiter.cancel()
        await bot.close()
        await task


@pytest.fixture
async def double() -> AsyncIterator[DiscordDouble]:
    async with DiscordDouble(heartbeat_interval_ms=1000) as d:
        await d.add_user(ALICE, "alice", global_name="Alice")
        await d.add_guild(GUILD, "Clanker Lab", channels=[(GENERAL, "general")], members=[ALICE])
        await d.add_thread(GUILD, GENERAL, THREAD, "ideas")
        with point_discord_py_at(d):
            yield d


@pytest.fixture
async def bot(double: DiscordDouble) -> AsyncIterator[Bot]:
    async with running(double) as client:
        yield client


def general(bot: Bot) -> discord.TextChannel:
    channel = bot.get_channel(GENERAL)
    assert isinstance(channel, discord.TextChannel)
    return channel


def posts(double: DiscordDouble) -> list[str]:
    return [r.path for r in double.requests if r.method == "POST" and r.path.endswith("/messages")]


# -- connecting -------------------------------------------------------------------------------


async def test_login_ready_and_guild_create_fill_the_cache(double: DiscordDouble, bot: Bot) -> None:
    assert bot.user is not None and bot.user.id == BOT_ID and bot.user.bot
    guild = bot.get_guild(GUILD)
    assert guild is not None and guild.name == "Clanker Lab" and not guild.unavailable
    assert general(bot).guild == guild
    thread = bot.get_channel(THREAD)
    assert isinstance(thread, discord.Thread) and thread.parent_id == GENERAL

    [identify] = double.identifies
    assert identify.intents == INTENTS.value
    assert identify.payload["token"] == "<redacted>"
    assert double.connection_urls == ["/gateway?v=10&encoding=json&compress=zlib-stream"]
    assert double.heartbeats[:1] == [None]  # discord.py beats once right after HELLO
    assert [r.path for r in double.requests] == ["/users/@me", "/oauth2/applications/@me"]
    assert all("Authorization" not in r.headers and r.authorized for r in double.requests)


async def test_wrong_token_is_refused_at_login(double: DiscordDouble) -> None:
    client = Bot()
    try:
        with pytest.raises(discord.LoginFailure):
            await client.start("not-the-token")
    finally:
        await client.close()
    assert [(r.path, r.authorized) for r in double.requests] == [("/users/@me", False)]
    assert double.connections == 0


async def test_disallowed_message_content_raises_privileged_intents_required(
    double: DiscordDouble,
) -> None:
    double.privileged_intents_allowed = False
    client = Bot()
    try:
        with pytest.raises(discord.PrivilegedIntentsRequired):
            await asyncio.wait_for(client.start(double.token), 5)
        assert not client.is_closed()  # discord.py leaves the closing to its caller
    finally:
        await client.close()
    assert double.identifies == [] and double.connections == 1


async def test_members_intent_chunks_guilds_through_op_8(double: DiscordDouble) -> None:
    async with running(double, intents=INTENTS | discord.Intents(members=True)) as bot:
        guild = bot.get_guild(GUILD)
        assert guild is not None and guild.chunked and guild.member_count == 2
        member = guild.get_member(ALICE)
        assert member is not None and member.display_name == "Alice"
    [request] = double.member_requests
    assert request["guild_id"] == GUILD


async def test_heartbeats_are_acknowledged(double: DiscordDouble) -> None:
    double.heartbeat_interval_ms = 50
    async with running(double) as bot:
        await double.wait_for(lambda: len(double.heartbeats) >= 3)
        assert bot.latency < 1.0  # discord.py saw the HEARTBEAT_ACKs


# -- receiving --------------------------------------------------------------------------------


async def test_guild_reply_to_the_bot_reaches_on_message(double: DiscordDouble, bot: Bot) -> None:
    mine = await general(bot).send("hello, I am the bot")
    assert (await bot.next_message(own=True)).id == mine.id  # Discord echoes the bot's own

    await double.dispatch_message(
        GENERAL,
        f"<@{BOT_ID}> thanks",
        author_id=ALICE,
        mentions=[BOT_ID],
        reply_to_message_id=mine.id,
    )
    msg = await bot.next_message()
    assert isinstance(msg.channel, discord.TextChannel) and msg.channel.id == GENERAL
    assert msg.guild is not None and msg.guild.id == GUILD
    assert isinstance(msg.author, discord.Member) and msg.author.id == ALICE
    assert msg.author.display_name == "Alice"
    assert msg.content == f"<@{BOT_ID}> thanks"
    assert [m.id for m in msg.mentions] == [BOT_ID]
    assert msg.type is discord.MessageType.reply
    assert msg.reference is not None and msg.reference.message_id == mine.id
    resolved = msg.reference.resolved
    assert isinstance(resolved, discord.Message) and resolved.author.id == BOT_ID


async def test_thread_message_lands_in_the_thread(double: DiscordDouble, bot: Bot) -> None:
    await double.dispatch_message(THREAD, "in the thread", author_id=ALICE)
    msg = await bot.next_message()
    assert isinstance(msg.channel, discord.Thread) and msg.channel.parent_id == GENERAL
    assert msg.mentions == [] and msg.reference is None


async def test_dm_reaches_on_message_and_can_be_answered(double: DiscordDouble, bot: Bot) -> None:
    event = await double.dispatch_message(DM, "hi in private", author_id=ALICE)
    assert "guild_id" not in event and event["channel_type"] == 1
    msg = await bot.next_message()
    assert msg.guild is None
    assert isinstance(msg.channel, discord.DMChannel) and msg.channel.id == DM
    assert msg.channel.type is discord.ChannelType.private
    assert msg.author.id == ALICE and msg.content == "hi in private"

    await msg.channel.send("hello back")
    assert (await double.wait_sent()).channel_id == DM
    user = await bot.fetch_user(ALICE)
    assert (await user.create_dm()).id == DM  # POST /users/@me/channels finds the same DM


async def test_attachments_download_from_the_double(double: DiscordDouble, bot: Bot) -> None:
    await double.dispatch_message(
        GENERAL, "see file", author_id=ALICE, attachments=[("notes.txt", b"the notes")]
    )
    msg = await bot.next_message()
    [attachment] = msg.attachments
    assert attachment.filename == "notes.txt" and attachment.content_type == "text/plain"
    assert await attachment.read() == b"the notes"


async def test_without_message_content_intent_guild_text_is_empty(double: DiscordDouble) -> None:
    intents = discord.Intents(guilds=True, guild_messages=True, dm_messages=True)
    async with running(double, intents=intents) as bot:
        await double.dispatch_message(GENERAL, "secret", author_id=ALICE)
        await double.dispatch_message(GENERAL, "hey bot", author_id=ALICE, mentions=[BOT_ID])
        await double.dispatch_message(DM, "private", author_id=ALICE)
        contents = [(await bot.next_message()).content for _ in range(3)]
    assert contents == ["", "hey bot", "private"]


# -- sending ----------------------------------------------------------------------------------


async def test_reply_records_reference_and_allowed_mentions(
    double: DiscordDouble, bot: Bot
) -> None:
    await double.dispatch_message(GENERAL, "question", author_id=ALICE)
    question = await bot.next_message()
    answer = await question.channel.send(
        "answer", reference=question, allowed_mentions=discord.AllowedMentions.none()
    )
    sent = await double.wait_sent()
    assert sent.content == "answer" and sent.message_id == answer.id
    assert sent.message_reference == {
        "message_id": question.id,
        "channel_id": GENERAL,
        "guild_id": GUILD,
    }
    assert sent.allowed_mentions == {"parse": []}
    assert answer.type is discord.MessageType.reply
    assert answer.reference is not None and answer.reference.message_id == question.id


async def test_files_go_as_multipart(double: DiscordDouble, bot: Bot) -> None:
    await general(bot).send("report", file=discord.File(io.BytesIO(b"data"), "out.txt"))
    sent = await double.wait_sent()
    assert sent.files == ("out.txt",) and sent.content == "report"
    assert double.requests[-1].json["content"] == "report"  # from payload_json


async def test_typing_is_recorded(double: DiscordDouble, bot: Bot) -> None:
    await general(bot).typing()
    assert double.typing == [GENERAL]


async def test_edit_updates_the_message(double: DiscordDouble, bot: Bot) -> None:
    draft = await general(bot).send("draft")
    final = await draft.edit(content="final")
    assert final.content == "final" and final.edited_at is not None
    assert [(e.message_id, e.content) for e in double.edits] == [(draft.id, "final")]
    with pytest.raises(discord.NotFound) as err:
        await general(bot).get_partial_message(42).edit(content="x")
    assert err.value.code == 10008


async def test_over_2000_characters_is_a_400(double: DiscordDouble, bot: Bot) -> None:
    await general(bot).send("x" * 2000)
    with pytest.raises(discord.HTTPException) as err:
        await general(bot).send("x" * 2001)
    assert err.value.status == 400 and err.value.code == 50035
    assert "Must be 2000 or fewer in length." in err.value.text
    assert len(double.sent) == 1


async def test_unknown_channel_is_a_404(double: DiscordDouble, bot: Bot) -> None:
    with pytest.raises(discord.NotFound) as err:
        await bot.get_partial_messageable(7).send("anyone?")
    assert err.value.code == 10003


# -- failures, as discord.py handles them -----------------------------------------------------


async def test_429_is_slept_on_and_retried(
    double: DiscordDouble, bot: Bot, caplog: pytest.LogCaptureFixture
) -> None:
    double.fail_next("POST", "/channels/*/messages", 429, retry_after=0.05)
    with caplog.at_level(logging.WARNING, logger="discord.http"):
        await general(bot).send("eventually")
    assert len(posts(double)) == 2 and len(double.sent) == 1
    assert "We are being rate limited." in caplog.text


async def test_persistent_429_raises_after_five_tries(double: DiscordDouble, bot: Bot) -> None:
    double.fail_next("POST", "/channels/*/messages", 429, retry_after=0.01, times=5)
    with pytest.raises(discord.HTTPException) as err:
        await general(bot).send("never")
    assert err.value.status == 429 and len(posts(double)) == 5


async def test_429_without_via_is_not_retried(double: DiscordDouble, bot: Bot) -> None:
    double.fail_next("POST", "/channels/*/messages", 429, retry_after=0.01, via=False)
    with pytest.raises(discord.HTTPException) as err:
        await general(bot).send("banned")
    assert err.value.status == 429 and len(posts(double)) == 1


async def test_long_429_raises_rate_limited_past_max_ratelimit_timeout(
    double: DiscordDouble,
) -> None:
    client = discord.Client(intents=INTENTS, max_ratelimit_timeout=30.0)
    try:
        await client.login(double.token)  # REST only: no gateway needed
        double.fail_next("POST", "/channels/*/messages", 429, retry_after=60.0)
        with pytest.raises(discord.RateLimited) as err:
            await client.get_partial_messageable(GENERAL).send("later")
        assert err.value.retry_after == 60.0
    finally:
        await client.close()


async def test_persistent_503_raises_discord_server_error(double: DiscordDouble, bot: Bot) -> None:
    double.fail_next("POST", "/channels/*/messages", 503, times=10)
    with pytest.raises(discord.DiscordServerError) as err:
        await general(bot).send("down")
    assert err.value.status == 503 and len(posts(double)) == 1  # 503 is not retried


async def test_500_once_is_retried_after_a_second(double: DiscordDouble, bot: Bot) -> None:
    double.fail_next("*", "/channels/*/messages", 500)
    await general(bot).send("second time lucky")
    assert len(posts(double)) == 2 and len(double.sent) == 1


# -- staying connected ------------------------------------------------------------------------


async def test_drop_connection_resumes_the_session(
    double: DiscordDouble, bot: Bot, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="discord.gateway"):
        await double.drop_connection()
        resume = await double.wait_resumed()
        await asyncio.wait_for(bot.resumed.wait(), 5)
    assert resume.session_id == double.identifies[0].session_id
    assert resume.path == "/resume-gateway"
    assert len(double.identifies) == 1 and double.connections == 2
    assert f"has successfully RESUMED session {resume.session_id}" in caplog.text

    await double.dispatch_message(GENERAL, "still here?", author_id=ALICE)
    assert (await bot.next_message()).content == "still here?"


async def test_messages_during_an_outage_are_replayed_exactly_once(
    double: DiscordDouble, bot: Bot
) -> None:
    async with double.outage():
        missed = await double.dispatch_message(GENERAL, "while you were away", author_id=ALICE)
    resume = await double.wait_resumed()
    assert resume.replayed == 1

    await double.dispatch_message(GENERAL, "after", author_id=ALICE)
    first, second = await bot.next_message(), await bot.next_message()
    assert first.id == int(missed["id"]) and second.content == "after"
    assert bot.inbox.empty()


async def test_op7_reconnect_resumes(
    double: DiscordDouble, bot: Bot, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="discord.gateway"):
        await double.request_reconnect()
        resume = await double.wait_resumed()
    assert resume.accepted and resume.path == "/resume-gateway" and resume.replayed == 0
    assert "Received RECONNECT opcode." in caplog.text
    await double.dispatch_message(GENERAL, "after reconnect", author_id=ALICE)
    assert (await bot.next_message()).content == "after reconnect"


async def test_invalid_session_makes_discord_py_identify_again(
    double: DiscordDouble, bot: Bot
) -> None:
    first = double.session_id
    await double.invalidate_session()
    second = await double.wait_identified(2)
    assert second.session_id != first and double.resumes == []
    assert double.connection_urls[-1].startswith("/gateway?")  # DEFAULT_GATEWAY again
    await double.dispatch_message(GENERAL, "new session", author_id=ALICE)
    assert (await bot.next_message()).content == "new session"
