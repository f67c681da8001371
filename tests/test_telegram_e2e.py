"""Telegram end to end: updates from the Bot API double through the real pipeline, store and
outbox, back to the double as sent messages."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from open_clanker.agent.base import ProviderRequest, StreamDone, StreamEvent, TextDelta
from open_clanker.agent.chain import ProviderChain
from open_clanker.agent.echo import ECHO_LABEL, EchoProvider
from open_clanker.channels.base import Channels
from open_clanker.channels.telegram import PollTiming, TelegramChannel
from open_clanker.config.model import AccessConfig, ChannelsConfig, Config
from open_clanker.core.types import AgentResponse, ChannelType
from open_clanker.pipeline import MemoryBus, OutboxWorker, Pipeline, build_pipeline
from open_clanker.pipeline.access import PairingDesk
from open_clanker.storage.store import Store
from tests.doubles.telegram_double import (
    BOT_USERNAME,
    Sent,
    TelegramDouble,
    config_for,
    message,
    update,
    user,
)

FAST = PollTiming(poll_timeout_s=1, stall_after_s=5.0, backoff_min_s=0.05, backoff_max_s=0.2)
ALLOWED = 42
GROUP = -100777
OTHER_GROUP = -100888  # a group nobody allowed


class LongMarkdownProvider:
    """Answers with ~9,000 characters of Markdown: paragraphs, then a long code block."""

    name = "long"
    model = "long-1"

    @staticmethod
    def text() -> str:
        prose = "\n\n".join(
            f"Paragraph {i}: " + "plain words in a sentence, with one **bold** word. " * 9
            for i in range(8)
        )
        code = "\n".join(f"    value_{i} = compute({i}) * 2  # step {i}" for i in range(130))
        return f"{prose}\n\n```python\n{code}\n```\n\nThat is all."

    async def complete(self, request: ProviderRequest) -> AgentResponse:
        return AgentResponse(content=self.text(), model=self.model, provider=self.name)

    async def stream(self, request: ProviderRequest) -> AsyncIterator[StreamEvent]:
        response = await self.complete(request)
        yield TextDelta(response.content)
        yield StreamDone(response)


class SlowStreamProvider:
    """Streams a Markdown answer word by word over ~1.5 s, so a draft is shown and edited."""

    name = "slow"
    model = "slow-1"
    answer = "Here is **the** answer, streamed slowly for the draft to show up in the chat."

    async def complete(self, request: ProviderRequest) -> AgentResponse:
        return AgentResponse(content=self.answer, model=self.model, provider=self.name)

    async def stream(self, request: ProviderRequest) -> AsyncIterator[StreamEvent]:
        words = self.answer.split(" ")
        for i, word in enumerate(words):
            await asyncio.sleep(0.1)
            yield TextDelta(word + (" " if i < len(words) - 1 else ""))
        yield StreamDone(await self.complete(request))


@dataclass
class Gateway:
    double: TelegramDouble
    tg: TelegramChannel
    store: Store
    pipeline: Pipeline

    def sent_to(self, chat: int) -> list[Sent]:
        return [s for s in self.double.sent if s.chat_id == chat]

    async def wait_sent(self, chat: int, count: int, timeout: float = 5.0) -> list[Sent]:
        await self.double.wait_until(lambda: len(self.sent_to(chat)) >= count, timeout)
        return self.sent_to(chat)

    async def settle(self) -> None:
        """Every submitted update has gone through the pipeline."""
        assert await self.pipeline.drain(5.0)
        self.pipeline.accepting = True


async def _gateway(
    tmp_path: Path,
    double: TelegramDouble,
    provider: object,
    policy: str = "pairing",
    **tg_config: object,
) -> AsyncIterator[Gateway]:
    tg_conf = config_for(double, allowed_chats=[ALLOWED, GROUP], **tg_config)
    config = Config(
        access=AccessConfig.model_validate({"dm_policy": policy}),
        channels=ChannelsConfig(telegram=tg_conf),
    )
    store = await Store.open(f"sqlite:///{tmp_path}/t.db")
    tg = TelegramChannel(tg_conf, timing=FAST)
    channels = Channels({ChannelType.TELEGRAM: tg})
    bus = MemoryBus()
    worker = OutboxWorker(store, channels, bus=bus)
    pipeline = build_pipeline(
        config,
        store,
        bus,
        ProviderChain([provider], 0),  # type: ignore[list-item]
        channels,
        bot_username=lambda _ch: tg.bot_username,
    )
    worker.start()
    await tg.start(pipeline.submit)
    try:
        yield Gateway(double, tg, store, pipeline)
    finally:
        await tg.stop()
        await pipeline.drain(5.0)
        await worker.stop()
        await store.close()


@pytest.fixture
async def double() -> AsyncIterator[TelegramDouble]:
    d = TelegramDouble()
    await d.start()
    yield d
    await d.stop()


@pytest.fixture
async def gw(tmp_path: Path, double: TelegramDouble) -> AsyncIterator[Gateway]:
    async for g in _gateway(tmp_path, double, EchoProvider()):
        yield g


async def test_allowed_private_message_is_answered(gw: Gateway) -> None:
    gw.double.push(update(message("hello there", chat_id=ALLOWED, sender=user(ALLOWED))))
    (reply,) = await gw.wait_sent(ALLOWED, 1)
    assert reply.text == f"{ECHO_LABEL} You said: hello there"
    assert reply.parse_mode == "HTML"
    assert reply.reply_to is None  # private chats are answered without quoting


async def test_stranger_gets_a_pairing_code_then_answers_after_approval(gw: Gateway) -> None:
    stranger = 5150
    gw.double.push(update(message("hi", chat_id=stranger, sender=user(stranger, "eve"))))
    (notice,) = await gw.wait_sent(stranger, 1)
    code = re.search(r"pairing code is ([A-Z0-9]{8})", notice.text)
    assert code is not None, notice.text
    assert await PairingDesk(gw.store.access).approve(code.group(1).lower()) is not None

    gw.double.push(update(message("now?", chat_id=stranger, sender=user(stranger, "eve"))))
    replies = await gw.wait_sent(stranger, 2)
    assert replies[1].text == f"{ECHO_LABEL} You said: now?"


async def test_nine_thousand_chars_arrive_as_three_ordered_parts(
    tmp_path: Path, double: TelegramDouble
) -> None:
    text = LongMarkdownProvider.text()
    assert 8500 <= len(text) <= 9500
    async for gw in _gateway(tmp_path, double, LongMarkdownProvider()):
        gw.double.push(update(message("tell me a lot", chat_id=ALLOWED, sender=user(ALLOWED))))
        parts = await gw.wait_sent(ALLOWED, 3)
        await gw.settle()
        parts = gw.sent_to(ALLOWED)
        assert len(parts) == 3
        assert all(len(p.text.encode("utf-16-le")) // 2 <= 4096 for p in parts)
        assert parts[0].text.startswith("Paragraph 0:")
        assert parts[-1].text.endswith("That is all.")
        numbers = [int(n) for p in parts for n in re.findall(r"Paragraph (\d+):", p.text)]
        assert numbers == sorted(numbers)
        assert set(numbers) == set(range(8))
        # The code block was cut: closed in one part and reopened in the next.
        with_code = [p for p in parts if "value_" in p.text]
        assert len(with_code) == 2
        for p in with_code:
            assert p.raw.count('<pre><code class="language-python">') == 1
            assert p.raw.count("</code></pre>") == 1
        steps = [int(n) for p in with_code for n in re.findall(r"# step (\d+)", p.text)]
        assert steps == list(range(130))


async def test_group_answers_only_when_mentioned_and_quotes_the_user(gw: Gateway) -> None:
    chatter = message("just chatting", chat_id=GROUP, chat_type="supergroup", sender=user(7, "bob"))
    gw.double.push(update(chatter))
    mention = message(
        f"@{BOT_USERNAME} what now?",
        chat_id=GROUP,
        chat_type="supergroup",
        sender=user(7, "bob"),
        message_id=4242,
    )
    gw.double.push(update(mention))
    (reply,) = await gw.wait_sent(GROUP, 1)
    await gw.settle()
    assert len(gw.sent_to(GROUP)) == 1
    assert reply.text == f"{ECHO_LABEL} You said: what now?"
    assert reply.reply_to == 4242


async def test_a_group_that_is_not_allowed_is_ignored_even_for_allowed_senders(
    gw: Gateway,
) -> None:
    await gw.store.access.allow("telegram", "7", "pairing")  # bob is paired
    for sender in (user(ALLOWED, "alice"), user(7, "bob")):  # allowed, paired
        asked = message(
            f"@{BOT_USERNAME} answer me here?",
            chat_id=OTHER_GROUP,
            chat_type="supergroup",
            sender=sender,
        )
        gw.double.push(update(asked))
    here = message(
        f"@{BOT_USERNAME} and here?", chat_id=GROUP, chat_type="supergroup", sender=user(9)
    )
    gw.double.push(update(here))
    (reply,) = await gw.wait_sent(GROUP, 1)
    await gw.settle()
    assert reply.text == f"{ECHO_LABEL} You said: and here?"  # a stranger, in an allowed group
    assert gw.sent_to(OTHER_GROUP) == []
    assert await gw.store.access.pending_codes(0) == []  # and no pairing code in a group


async def test_open_policy_answers_any_group_when_addressed(
    tmp_path: Path, double: TelegramDouble
) -> None:
    async for gw in _gateway(tmp_path, double, EchoProvider(), policy="open"):
        chatter = message("not for the bot", chat_id=OTHER_GROUP, chat_type="group")
        gw.double.push(update(chatter))
        asked = message(f"@{BOT_USERNAME} anyone?", chat_id=OTHER_GROUP, chat_type="group")
        gw.double.push(update(asked))
        (reply,) = await gw.wait_sent(OTHER_GROUP, 1)
        await gw.settle()
        assert reply.text == f"{ECHO_LABEL} You said: anyone?"
        assert len(gw.sent_to(OTHER_GROUP)) == 1


async def test_forum_topic_reply_stays_in_its_topic(gw: Gateway) -> None:
    root = message(None, chat_id=GROUP, chat_type="supergroup", message_id=900)
    body = message(
        f"@{BOT_USERNAME} in topic",
        chat_id=GROUP,
        chat_type="supergroup",
        sender=user(7, "bob"),
        message_thread_id=900,
        is_topic_message=True,
        reply_to_message=root,
    )
    gw.double.push(update(body))
    (reply,) = await gw.wait_sent(GROUP, 1)
    assert reply.thread_id == 900


async def test_the_same_update_delivered_twice_is_answered_once(gw: Gateway) -> None:
    msg = message("once please", chat_id=ALLOWED, sender=user(ALLOWED), message_id=555)
    gw.double.push(update(msg))
    gw.double.push(update(msg))  # Telegram re-delivers the same message
    await gw.wait_sent(ALLOWED, 1)
    await gw.settle()
    await gw.double.wait_until(lambda: len(gw.double.params_of("getUpdates")) >= 2)
    await gw.settle()
    assert [s.text for s in gw.sent_to(ALLOWED)] == [f"{ECHO_LABEL} You said: once please"]


async def test_a_429_delays_but_loses_nothing(gw: Gateway) -> None:
    gw.double.fail_sends(1, 429)
    gw.double.push(update(message("first", chat_id=ALLOWED, sender=user(ALLOWED))))
    gw.double.push(update(message("second", chat_id=ALLOWED, sender=user(ALLOWED))))
    replies = await gw.wait_sent(ALLOWED, 2, timeout=10)
    assert [r.text for r in replies] == [
        f"{ECHO_LABEL} You said: first",
        f"{ECHO_LABEL} You said: second",
    ]
    assert len(gw.double.params_of("sendMessage")) == 3  # one refused, then both delivered


async def test_webhook_secret_is_checked_and_the_update_answered(
    tmp_path: Path, double: TelegramDouble
) -> None:
    async for gw in _gateway(
        tmp_path,
        double,
        EchoProvider(),
        mode="webhook",
        webhook_url="https://bot.example.org/telegram/webhook",
        webhook_secret="hook-secret-1",
    ):
        body = json.dumps(
            update(message("by webhook", chat_id=ALLOWED, sender=user(ALLOWED)), update_id=77)
        ).encode()
        assert await gw.tg.handle_webhook("not-the-secret", body) == 401
        assert await gw.tg.handle_webhook("hook-secret-1", body) == 200
        assert await gw.tg.handle_webhook("hook-secret-1", body) == 200  # a re-delivery
        (reply,) = await gw.wait_sent(ALLOWED, 1)
        await gw.settle()
        assert len(gw.sent_to(ALLOWED)) == 1
        assert reply.text == f"{ECHO_LABEL} You said: by webhook"
        assert "getUpdates" not in double.methods()


async def test_streamed_draft_is_edited_into_the_final_reply(
    tmp_path: Path, double: TelegramDouble
) -> None:
    async for gw in _gateway(tmp_path, double, SlowStreamProvider()):
        gw.double.push(update(message("explain", chat_id=ALLOWED, sender=user(ALLOWED))))
        await gw.wait_sent(ALLOWED, 1)
        draft = gw.sent_to(ALLOWED)[0]
        assert draft.parse_mode is None and draft.text.endswith("…")  # a plain-text draft
        await gw.settle()
        first = gw.sent_to(ALLOWED)[0]
        await gw.double.wait_until(lambda sent=first: sent.parse_mode == "HTML", 5)
        final = gw.sent_to(ALLOWED)
        assert len(final) == 1  # one message, edited in place: the answer is never shown twice
        assert (
            final[0].text
            == "Here is the answer, streamed slowly for the draft to show up in the chat."
        )
        assert "<b>the</b>" in final[0].raw
        methods = [c.method for c in gw.double.calls if c.params.get("chat_id") == ALLOWED]
        assert methods.count("sendMessage") == 1  # the draft
        assert methods[-1] == "editMessageText"  # the final reply replaced it
