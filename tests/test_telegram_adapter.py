"""The Telegram adapter driven through python-telegram-bot against the loopback Bot API double."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import structlog

from open_clanker.channels.base import Channel, ChannelState, SupportsTyping
from open_clanker.channels.telegram import PollTiming, TelegramChannel, TelegramConfig
from open_clanker.core.errors import ChannelError, ConfigError
from open_clanker.core.types import Inbound
from open_clanker.storage.outbox import OutboxItem
from tests.doubles.telegram_double import (
    BOT_USERNAME,
    TelegramDouble,
    config_for,
    message,
    update,
)

FAST = PollTiming(poll_timeout_s=1, stall_after_s=3.0, backoff_min_s=0.05, backoff_max_s=0.2)


async def until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait for a condition that no API call announces (health, submitted inbounds)."""
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.01)


class Inbox:
    def __init__(self) -> None:
        self.items: list[Inbound] = []

    async def __call__(self, inbound: Inbound) -> None:
        self.items.append(inbound)


@pytest.fixture
async def double() -> AsyncIterator[TelegramDouble]:
    d = TelegramDouble()
    await d.start()
    yield d
    await d.stop()


@pytest.fixture
async def started(double: TelegramDouble) -> AsyncIterator[tuple[TelegramChannel, Inbox]]:
    tg = TelegramChannel(config_for(double), timing=FAST)
    inbox = Inbox()
    await tg.start(inbox)
    yield tg, inbox
    await tg.stop()


def item(text: str, chat: str = "42", **kw: object) -> OutboxItem:
    values: dict[str, object] = {
        "seq": 1,
        "message_id": "m1",
        "channel": "telegram",
        "channel_id": chat,
        "thread_id": None,
        "reply_to": None,
        "part": 0,
        "parts": 1,
        "text": text,
        "attempts": 0,
        "next_attempt_at": 0.0,
    }
    values.update(kw)
    return OutboxItem(**values)  # type: ignore[arg-type]


async def test_is_a_channel_with_typing(double: TelegramDouble) -> None:
    tg = TelegramChannel(config_for(double))
    assert isinstance(tg, Channel)
    assert isinstance(tg, SupportsTyping)
    assert tg.webhook_path == ""  # polling: no webhook route


def test_a_missing_token_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="bot_token"):
        TelegramChannel(TelegramConfig())


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("https://bot.example.org/telegram/webhook", "/telegram/webhook"),
        ("https://bot.example.org/hooks/tg-7f3a", "/hooks/tg-7f3a"),
        ("https://bot.example.org", "/telegram/webhook"),
    ],
)
def test_webhook_path_is_the_path_of_the_webhook_url(url: str, path: str) -> None:
    config = TelegramConfig(bot_token="1:x", mode="webhook", webhook_url=url)
    assert TelegramChannel(config).webhook_path == path


async def test_start_polling_sets_up_and_receives(
    double: TelegramDouble, started: tuple[TelegramChannel, Inbox]
) -> None:
    tg, inbox = started
    assert tg.bot_username == BOT_USERNAME
    assert tg.health.state is ChannelState.CONNECTED
    methods = double.methods()
    assert methods[:3] == ["getMe", "setMyCommands", "deleteWebhook"] or methods[:4] == [
        "getMe",
        "getMe",
        "setMyCommands",
        "deleteWebhook",
    ]
    commands = {c["command"] for c in double.params_of("setMyCommands")[0]["commands"]}
    assert {"help", "new", "reset", "status", "start"} <= commands

    double.push(update(message("hello", chat_id=42)))
    double.push(update(message("again", chat_id=42)))
    await until(lambda: len(inbox.items) == 2)
    assert [i.message.text for i in inbox.items] == ["hello", "again"]
    # The offset confirms what was fetched: the next poll asks for newer updates only.
    await double.wait_until(
        lambda: any(p.get("offset", 0) >= 2 for p in double.params_of("getUpdates"))
    )
    polls = double.params_of("getUpdates")
    assert polls[-1]["timeout"] == FAST.poll_timeout_s
    assert set(polls[-1]["allowed_updates"]) == {"message", "edited_message"}


async def test_edits_are_ignored(
    double: TelegramDouble, started: tuple[TelegramChannel, Inbox]
) -> None:
    _tg, inbox = started
    double.push(update(message("edited", chat_id=42), kind="edited_message"))
    fresh = double.push(update(message("fresh", chat_id=42)))
    await until(lambda: len(inbox.items) == 1)
    done = fresh["update_id"] + 1
    await double.wait_until(
        lambda: any(p.get("offset") == done for p in double.params_of("getUpdates"))
    )
    assert [i.message.text for i in inbox.items] == ["fresh"]


async def test_poll_failures_back_off_degrade_and_recover(
    double: TelegramDouble, started: tuple[TelegramChannel, Inbox]
) -> None:
    tg, inbox = started
    with structlog.testing.capture_logs() as logs:
        double.get_updates_failures = 3
        await until(lambda: tg.health.state is ChannelState.DEGRADED)
        double.push(update(message("after the outage", chat_id=42)))
        await until(lambda: len(inbox.items) == 1)
    assert tg.health.state is ChannelState.CONNECTED
    events = [e["event"] for e in logs]
    assert events.count("telegram_poll_failed") == 3
    assert "telegram_recovered" in events
    waits = [e["retry_in"] for e in logs if e["event"] == "telegram_poll_failed"]
    assert waits == sorted(waits) and waits[-1] <= FAST.backoff_max_s


async def test_watchdog_restarts_a_stalled_poll(double: TelegramDouble) -> None:
    timing = PollTiming(poll_timeout_s=1, stall_after_s=0.5, backoff_min_s=0.05)
    tg = TelegramChannel(config_for(double), timing=timing)
    inbox = Inbox()
    double.hang_get_updates = True
    with structlog.testing.capture_logs() as logs:
        await tg.start(inbox)
        await until(lambda: tg.health.state is ChannelState.DEGRADED)
        assert "stalled" in tg.health.detail
        assert tg.health.as_json()["state"] == "degraded"
        double.release_hang()
        double.push(update(message("alive again", chat_id=42)))
        await until(lambda: len(inbox.items) == 1)
    assert tg.health.state is ChannelState.CONNECTED
    assert "telegram_poll_stalled" in [e["event"] for e in logs]
    await tg.stop()
    assert tg.health.as_json()["state"] == "stopped"


async def test_unreachable_telegram_at_start_keeps_retrying(double: TelegramDouble) -> None:
    tg = TelegramChannel(config_for(double, api_base_url="http://127.0.0.1:9"), timing=FAST)
    with structlog.testing.capture_logs() as logs:
        await tg.start(Inbox())
        assert tg.health.state is ChannelState.DEGRADED
        await until(lambda: sum(e["event"] == "telegram_setup_failed" for e in logs) >= 2)
        await tg.stop()
    assert tg.bot_username is None


async def test_wrong_token_is_reported_without_the_token(double: TelegramDouble) -> None:
    secret = "987654321:ZZZ-this-is-the-wrong-token-000000000"
    tg = TelegramChannel(config_for(double, bot_token=secret), timing=FAST)
    with structlog.testing.capture_logs() as logs:
        await tg.start(Inbox())
        await tg.stop()
    assert "bot token" in tg.health.detail
    assert secret not in repr(logs)
    assert secret not in tg.health.detail
    with pytest.raises(ChannelError) as err:
        await tg.send(item("hi"))
    assert secret not in str(err.value)


def test_httpx_logger_cannot_print_request_urls() -> None:
    # httpx logs every request URL (with the bot token) at INFO; the gateway keeps it at WARNING.
    from open_clanker.core.logging import setup_logging

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        setup_logging("debug")
        assert logging.getLogger("httpx").getEffectiveLevel() >= logging.WARNING
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


async def test_send_renders_html_with_reply_and_thread(
    double: TelegramDouble, started: tuple[TelegramChannel, Inbox]
) -> None:
    tg, _ = started
    await tg.send(
        item("**Hi** <script>alert(1)</script> & `x<y`", chat="-100", thread_id="7", reply_to="55")
    )
    sent = double.sent[-1]
    assert sent.parse_mode == "HTML"
    assert sent.raw == "<b>Hi</b> &lt;script&gt;alert(1)&lt;/script&gt; &amp; <code>x&lt;y</code>"
    assert sent.text == "Hi <script>alert(1)</script> & x<y"
    assert sent.chat_id == -100
    assert sent.thread_id == 7
    assert sent.reply_to == 55
    params = double.params_of("sendMessage")[-1]
    assert params["reply_parameters"]["allow_sending_without_reply"] is True


async def test_entity_rejection_falls_back_to_plain_text(
    double: TelegramDouble, started: tuple[TelegramChannel, Inbox]
) -> None:
    tg, _ = started
    double.reject_entities = 1
    await tg.send(item("**bold** text"))
    assert len(double.sent) == 1
    assert double.sent[0].parse_mode is None
    assert double.sent[0].text == "bold text"


@pytest.mark.parametrize(
    ("status", "retryable", "retry_after"),
    [
        (429, True, 1.0),
        (500, True, None),
        (502, True, None),
        (403, False, None),
        (400, False, None),
    ],
)
async def test_send_errors_become_channel_errors(
    double: TelegramDouble,
    started: tuple[TelegramChannel, Inbox],
    status: int,
    retryable: bool,
    retry_after: float | None,
) -> None:
    tg, _ = started
    double.fail_sends(1, status)
    with pytest.raises(ChannelError) as err:
        await tg.send(item("hello"))
    assert err.value.retryable is retryable
    assert err.value.retry_after == retry_after
    assert err.value.channel == "telegram"
    assert err.value.__cause__ is None
    assert double.token not in err.value.message
    await tg.send(item("hello"))  # the next one goes through
    assert [s.text for s in double.sent] == ["hello"]


async def test_network_failure_is_retryable(double: TelegramDouble) -> None:
    tg = TelegramChannel(config_for(double, api_base_url="http://127.0.0.1:9"), timing=FAST)
    with pytest.raises(ChannelError) as err:
        await tg.send(item("hello"))
    assert err.value.retryable is True


async def test_typing(double: TelegramDouble, started: tuple[TelegramChannel, Inbox]) -> None:
    tg, _ = started
    await tg.typing("-100", "7")
    params = double.params_of("sendChatAction")[-1]
    assert params == {"chat_id": -100, "action": "typing", "message_thread_id": 7}


async def test_long_reply_parts_are_each_accepted(
    double: TelegramDouble, started: tuple[TelegramChannel, Inbox]
) -> None:
    tg, _ = started
    text = "\n\n".join(f"Paragraph {i}: " + "émoji 😀 **bold** word " * 40 for i in range(12))
    parts = tg.split(text)
    assert len(parts) > 1
    for n, part in enumerate(parts):
        await tg.send(item(part, part=n, parts=len(parts)))
    assert len(double.sent) == len(parts)


# -- webhook ------------------------------------------------------------------------------------

WebhookFactory = Callable[[], Awaitable[tuple[TelegramChannel, Inbox]]]


async def test_webhook_mode_registers_and_checks_the_secret(double: TelegramDouble) -> None:
    config = config_for(
        double,
        mode="webhook",
        webhook_url="https://bot.example.org/telegram/webhook",
        webhook_secret="s3cret-value",
    )
    tg = TelegramChannel(config, timing=FAST)
    inbox = Inbox()
    await tg.start(inbox)
    try:
        assert double.webhook_url == "https://bot.example.org/telegram/webhook"
        assert double.webhook_secret == "s3cret-value"
        assert "deleteWebhook" not in double.methods()
        assert "getUpdates" not in double.methods()
        body = _json(update(message("via webhook", chat_id=42), update_id=5))
        assert await tg.handle_webhook("wrong", body) == 401
        assert await tg.handle_webhook(None, body) == 401
        assert inbox.items == []
        assert await tg.handle_webhook("s3cret-value", b"{not json") == 400
        assert await tg.handle_webhook("s3cret-value", b"[1, 2]") == 400
        assert await tg.handle_webhook("s3cret-value", body) == 200
        assert [i.message.text for i in inbox.items] == ["via webhook"]
    finally:
        await tg.stop()


async def test_webhook_watchdog_resets_a_lost_webhook_and_reports_errors(
    double: TelegramDouble,
) -> None:
    url = "https://bot.example.org/telegram/webhook"
    config = config_for(double, mode="webhook", webhook_url=url, webhook_secret="s3cret")
    tg = TelegramChannel(config, timing=FAST)
    await tg.start(Inbox())
    try:
        await double.wait_until(lambda: "getWebhookInfo" in double.methods())
        assert tg.health.state is ChannelState.CONNECTED
        double.webhook_url = ""  # someone deleted it
        await double.wait_until(lambda: double.methods().count("setWebhook") == 2)
        assert double.webhook_url == url
        await until(lambda: tg.health.state is ChannelState.CONNECTED)
        double.webhook_error = "Connection refused"
        await until(lambda: tg.health.state is ChannelState.DEGRADED)
        assert "Connection refused" in tg.health.detail
    finally:
        await tg.stop()


async def test_switching_back_to_polling_deletes_the_webhook(double: TelegramDouble) -> None:
    double.webhook_url = "https://old.example.org/hook"
    tg = TelegramChannel(config_for(double), timing=FAST)
    inbox = Inbox()
    await tg.start(inbox)
    try:
        assert double.webhook_url == ""
        double.push(update(message("polled", chat_id=42)))
        await until(lambda: len(inbox.items) == 1)
    finally:
        await tg.stop()


def _json(body: object) -> bytes:
    import json

    return json.dumps(body).encode()


async def test_the_token_never_reaches_any_log(
    double: TelegramDouble, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    logging.getLogger("httpx").setLevel(logging.NOTSET)  # as an unconfigured process has it
    tg = TelegramChannel(config_for(double), timing=FAST)
    inbox = Inbox()
    await tg.start(inbox)
    try:
        double.push(update(message("hi", chat_id=42)))
        await until(lambda: len(inbox.items) == 1)
        await tg.send(item("reply"))
        double.fail_sends(1, 500)
        with pytest.raises(ChannelError):
            await tg.send(item("reply"))
    finally:
        await tg.stop()
    assert "getUpdates" in caplog.text  # PTB's own debug lines were captured
    assert double.token not in caplog.text
    assert double.token.split(":")[1] not in caplog.text


async def test_the_double_speaks_the_bot_api_body_formats(double: TelegramDouble) -> None:
    import aiohttp

    url = f"{double.base_url}/bot{double.token}/sendMessage"
    async with aiohttp.ClientSession() as http:
        async with http.post(
            url, json={"chat_id": 1, "text": "<b>json</b>", "parse_mode": "HTML"}
        ) as r:
            assert r.status == 200
        form = aiohttp.FormData({"chat_id": "2", "text": "multi"})
        form.add_field("document", b"bytes", filename="a.txt")
        async with http.post(url, data=form) as r:
            assert r.status == 200
        async with http.post(url, data={"chat_id": "3", "text": "x" * 4097}) as r:
            assert r.status == 400
            assert (await r.json())["description"] == "Bad Request: message is too long"
        async with http.post(
            url, data={"chat_id": "3", "text": "<b>" + "x" * 4096 + "</b>", "parse_mode": "HTML"}
        ) as r:
            assert r.status == 200  # tags do not count
        async with http.post(
            url, data={"chat_id": "3", "text": "<blink>x", "parse_mode": "HTML"}
        ) as r:
            assert "can't parse entities" in (await r.json())["description"]
        async with http.post(f"{double.base_url}/botWRONG/getMe") as r:
            assert r.status == 401
            assert await r.json() == {"ok": False, "error_code": 401, "description": "Unauthorized"}
    assert [s.text for s in double.sent][:2] == ["json", "multi"]


async def test_photos_fetched_as_data_urls_for_the_model(
    double: TelegramDouble, started: tuple[TelegramChannel, Inbox]
) -> None:
    from open_clanker.core.types import Attachment

    double.files["ph1"] = b"\x89PNG fake image bytes"
    tg, _inbox = started
    photo = Attachment(id="ph1", url="telegram-file:ph1", mime_type="image/jpeg", size_bytes=21)
    got = await tg.fetch_attachment(photo)
    assert got is not None
    assert got.url == "data:image/jpeg;base64,iVBORyBmYWtlIGltYWdlIGJ5dGVz"
    assert double.token not in got.url
    missing = Attachment(id="nope", url="telegram-file:nope", mime_type="image/jpeg")
    assert await tg.fetch_attachment(missing) is None
    web = Attachment(id="w", url="https://example.com/x.png", mime_type="image/png")
    assert await tg.fetch_attachment(web) is None
