"""SIGTERM as a real process meets it: in-flight replies finish and are delivered, new work is
refused with 503, the process exits 0; a second signal exits at once and loses nothing.

The model double holds its answer until the test releases it, so "in flight" is a fact of the
test, not a race against a sleep.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from open_clanker.channels.base import ChannelHealth, Channels, ChannelState
from open_clanker.channels.telegram import PollTiming, TelegramChannel
from open_clanker.core.errors import ChannelError
from open_clanker.core.types import ChannelType, Inbound
from open_clanker.pipeline.outbox_worker import OutboxWorker
from open_clanker.storage.outbox import OutboxItem, outbox_rows
from open_clanker.storage.store import Store
from tests.doubles.anthropic_double import AnthropicDouble, Reply
from tests.doubles.telegram_double import (
    TelegramDouble,
    config_for,
    message,
    update,
    user,
)
from tests.gw_async import (
    TOKEN,
    events,
    exited,
    kill,
    post_chat,
    session_messages,
    signal_and_wait,
    start_gateway,
    until,
    until_ready_says,
)
from tests.proc import clean_env

CHAT = 42


def gateway_env(tmp_path: Path, model: AnthropicDouble, **extra: str) -> dict[str, str]:
    return clean_env(
        tmp_path / "data",
        OPENCLAW_GATEWAY_TOKEN=TOKEN,
        OPENCLAW_ANTHROPIC_API_KEY=model.api_key,
        OPENCLAW_AGENT__BASE_URL=model.base_url,
        OPENCLAW_AGENT__STREAM="false",
        OPENCLAW_LOGGING__FORMAT="json",
        **extra,
    )


def shutting_down(status: int, body: object) -> bool:
    return status == 503


@pytest.fixture
async def model() -> AsyncIterator[AnthropicDouble]:
    async with AnthropicDouble() as double:
        yield double


async def test_sigterm_lets_the_reply_in_flight_finish_then_exits_0(
    tmp_path: Path, model: AnthropicDouble
) -> None:
    hold = asyncio.Event()
    model.script(Reply(text="The slow answer.", hold=hold))
    gw = await start_gateway(gateway_env(tmp_path, model), tmp_path)
    try:
        async with aiohttp.ClientSession() as http:
            waiting = asyncio.create_task(post_chat(http, gw, "a slow question", session="slow"))
            await until(lambda: len(model.requests) == 1, "the model call is in flight")
            gw.proc.send_signal(signal.SIGTERM)
            ready = await until_ready_says(http, gw, shutting_down)
            assert ready["status"] == "not_ready"
            # New work during the drain: a named 503, and no model call.
            status, body, _ = await post_chat(http, gw, "too late", session="late")
            assert status == 503
            assert body["error"]["code"] == "not_ready"
            assert "shutting down" in body["error"]["message"]
            async with http.get(f"{gw.base_url}/health") as r:
                assert r.status == 200  # liveness: a draining process is alive
            hold.set()
            status, body, _ = await waiting
        assert status == 200
        assert body["reply"]["content"] == "The slow answer."
        code, _out, err = await exited(gw)
    finally:
        kill(gw)
    assert code == 0, err[-3000:]
    assert len(model.requests) == 1
    seen = events(err)
    order = ["shutdown_requested", "drain_done", "http_stopped", "gateway_stopped"]
    assert [e for e in seen if e in order] == order
    assert "Traceback" not in err


async def test_a_second_sigterm_exits_at_once_and_recovery_answers_after_restart(
    tmp_path: Path, model: AnthropicDouble
) -> None:
    never = asyncio.Event()  # the first run's model call never answers
    model.script(Reply(text="Never sent.", hold=never))
    env = gateway_env(tmp_path, model)
    gw = await start_gateway(env, tmp_path)
    try:
        async with aiohttp.ClientSession() as http:
            waiting = asyncio.create_task(post_chat(http, gw, "are you there?", session="cut"))
            await until(lambda: len(model.requests) == 1, "the model call is in flight")
            gw.proc.send_signal(signal.SIGTERM)
            await until_ready_says(http, gw, shutting_down)
            # The drain would wait up to 30 s for the held answer; the second signal does not.
            code, _out, err = await signal_and_wait(gw, timeout=15)
            with pytest.raises(aiohttp.ClientError):
                await waiting
    finally:
        kill(gw)
    assert code == 128 + signal.SIGTERM
    assert "shutdown_forced" in events(err)
    assert "gateway_stopped" not in events(err)

    # The message was stored before the model call: the next start answers it.
    model.default = Reply(text="Answered after the restart.")
    gw = await start_gateway(env, tmp_path)
    try:
        async with aiohttp.ClientSession() as http:
            history: list[dict[str, object]] = []

            async def answered() -> bool:
                history[:] = await session_messages(http, gw, "cut")
                return len(history) == 2

            async with asyncio.timeout(20):
                while not await answered():
                    await asyncio.sleep(0.05)
        assert [(m["role"], m["text"]) for m in history] == [
            ("user", "are you there?"),
            ("assistant", "Answered after the restart."),
        ]
        code, _out, err = await signal_and_wait(gw)
    finally:
        kill(gw)
    assert code == 0, err[-3000:]
    assert "pending_resumed" in events(err)


async def test_telegram_reply_in_flight_is_delivered_before_exit(
    tmp_path: Path, model: AnthropicDouble
) -> None:
    tg = TelegramDouble()
    await tg.start()
    hold = asyncio.Event()
    model.script(Reply(text="The slow answer.", hold=hold))
    (tmp_path / "config.toml").write_text(
        f'[channels.telegram]\napi_base_url = "{tg.base_url}"\nallowed_chats = [{CHAT}]\n'
    )
    env = gateway_env(tmp_path, model, OPENCLAW_TELEGRAM_BOT_TOKEN=tg.token)

    def replies() -> list[str]:
        return [s.text for s in tg.sent if s.chat_id == CHAT]

    try:
        gw = await start_gateway(env, tmp_path)
        try:
            async with aiohttp.ClientSession() as http:
                await until(lambda: "getUpdates" in tg.methods(), "the bot polls")
                tg.push(update(message("hello", chat_id=CHAT, sender=user(CHAT))))
                await until(lambda: len(model.requests) == 1, "the model call is in flight")
                gw.proc.send_signal(signal.SIGTERM)
                await until_ready_says(
                    http, gw, lambda _s, b: b["channels"]["telegram"]["state"] == "stopped"
                )
                # Telegram stopped being polled: this one waits at Telegram for the next start.
                tg.push(update(message("are you still there?", chat_id=CHAT, sender=user(CHAT))))
                hold.set()
                code, _out, err = await exited(gw)
        finally:
            kill(gw)
        assert code == 0, err[-3000:]
        assert replies() == ["The slow answer."]  # delivered before the process ended
        assert len(model.requests) == 1
        seen = events(err)
        assert seen.index("telegram_receiving_stopped") < seen.index("reply_delivered")
        assert seen.index("reply_delivered") < seen.index("gateway_stopped")

        model.default = Reply(text="Yes, after a restart.")
        gw = await start_gateway(env, tmp_path)
        try:
            await tg.wait_until(lambda: len(replies()) == 2, timeout=20)
            code, _out, err = await signal_and_wait(gw)
        finally:
            kill(gw)
        assert code == 0, err[-3000:]
        assert replies() == ["The slow answer.", "Yes, after a restart."]
    finally:
        await tg.stop()


# -- the adapter's half: stop receiving, keep sending ----------------------------------------

FAST = PollTiming(poll_timeout_s=1, stall_after_s=5.0, backoff_min_s=0.05, backoff_max_s=0.2)


def outbox_item(text: str) -> OutboxItem:
    return OutboxItem(
        seq=1,
        message_id="m1",
        channel="telegram",
        channel_id=str(CHAT),
        thread_id=None,
        reply_to=None,
        part=0,
        parts=1,
        text=text,
        attempts=0,
        next_attempt_at=0.0,
    )


@pytest.fixture
async def tg_double() -> AsyncIterator[TelegramDouble]:
    double = TelegramDouble()
    await double.start()
    yield double
    await double.stop()


async def test_telegram_polling_stops_receiving_but_still_sends(
    tg_double: TelegramDouble,
) -> None:
    received: list[Inbound] = []

    async def submit(inbound: Inbound) -> None:
        received.append(inbound)

    tg = TelegramChannel(config_for(tg_double), timing=FAST)
    await tg.start(submit)
    try:
        await tg_double.wait_until(lambda: "getUpdates" in tg_double.methods())
        await tg.stop_receiving()
        polls = tg_double.methods().count("getUpdates")
        assert tg.health.state is ChannelState.STOPPED
        tg_double.push(update(message("after the stop", chat_id=CHAT)))
        await tg.send(outbox_item("a reply accepted before the stop"))
        assert [s.text for s in tg_double.sent] == ["a reply accepted before the stop"]
        assert tg_double.methods().count("getUpdates") == polls  # the poll loop is gone
        assert received == []
        assert tg.health.state is ChannelState.STOPPED  # a send does not make it "connected"
    finally:
        await tg.stop()


async def test_telegram_webhook_refuses_updates_with_503_after_stop_receiving(
    tg_double: TelegramDouble,
) -> None:
    received: list[Inbound] = []

    async def submit(inbound: Inbound) -> None:
        received.append(inbound)

    config = config_for(
        tg_double,
        mode="webhook",
        webhook_url="https://bot.example.org/telegram/webhook",
        webhook_secret="s3cret-value",
    )
    tg = TelegramChannel(config, timing=FAST)
    await tg.start(submit)
    try:
        body = json.dumps(update(message("first", chat_id=CHAT), update_id=5)).encode()
        assert await tg.handle_webhook("s3cret-value", body) == 200
        await tg.stop_receiving()
        later = json.dumps(update(message("second", chat_id=CHAT), update_id=6)).encode()
        assert await tg.handle_webhook("s3cret-value", later) == 503  # Telegram re-sends it
        assert [i.message.text for i in received] == ["first"]
        await tg.send(outbox_item("still sending"))
        assert [s.text for s in tg_double.sent] == ["still sending"]
    finally:
        await tg.stop()


class RecordingChannel:
    """Delivers to a list; chat "13" is unreachable."""

    type = ChannelType.TELEGRAM

    def __init__(self) -> None:
        self.health = ChannelHealth()
        self.sent: list[tuple[str, str]] = []

    def split(self, text: str) -> list[str]:
        return [text]

    async def send(self, item: OutboxItem) -> None:
        if item.channel_id == "13":
            raise ChannelError("Telegram is unreachable.", "telegram", retryable=True)
        self.sent.append((item.channel_id, item.text))


async def test_outbox_flush_delivers_what_is_due_and_keeps_failures_for_the_next_start(
    tmp_path: Path,
) -> None:
    store = await Store.open(f"sqlite:///{tmp_path}/flush.db")
    channel = RecordingChannel()
    worker = OutboxWorker(store, Channels({ChannelType.TELEGRAM: channel}))  # type: ignore[dict-item]
    try:
        worker.start()
        # Queued without waking the worker: only the flush is sure to deliver them.
        await store.outbox.enqueue(
            outbox_rows("r1", "telegram", "42", ["part 1", "part 2"])
            + outbox_rows("r2", "telegram", "13", ["lost for now"])
        )
        assert await worker.flush_and_stop(10)
        assert channel.sent == [("42", "part 1"), ("42", "part 2")]
        assert await store.outbox.count("pending") == 1  # delivered after the next start
        assert await worker.flush_and_stop(10)  # stopping twice is harmless
    finally:
        await store.close()
