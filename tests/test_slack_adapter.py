"""The Slack adapter on its own against the double: the replicas contract (receive or not, start
and stop receiving in any order), acks only after `submit` returned, the Events API handler,
sending errors and files."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Callable

import pytest

from open_clanker.channels.base import Channel, SupportsAttachments, SupportsDrafts
from open_clanker.channels.slack.adapter import SENDING_ONLY, SlackChannel, SlackTiming
from open_clanker.channels.slack.socket import SocketTiming
from open_clanker.core.errors import ChannelError
from open_clanker.core.types import Attachment, Inbound
from open_clanker.storage.outbox import OutboxItem
from tests.doubles.slack_double import SlackDouble, config_for

GENERAL = "C0GENERAL1"
DM = "D0ALICE001"
FAST = SlackTiming(
    socket=SocketTiming(ping_interval_s=0.2, watch_interval_s=0.1, backoff_min_s=0.05),
    probe_interval_s=0.2,
    start_wait_s=5,
    ack_deadline_s=0.3,
)


async def until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait for a condition that no API call announces (health, submitted inbounds)."""
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.01)


class Inbox:
    """The pipeline's `submit`: records what it is given; `hold` keeps it from returning."""

    def __init__(self) -> None:
        self.items: list[Inbound] = []
        self.hold = asyncio.Event()
        self.hold.set()
        self.fail = 0

    async def __call__(self, inbound: Inbound) -> None:
        await self.hold.wait()
        if self.fail:
            self.fail -= 1
            raise OSError("storage hiccup")
        self.items.append(inbound)


@pytest.fixture
async def double() -> AsyncIterator[SlackDouble]:
    async with SlackDouble(ack_timeout_s=0.4) as d:
        d.add_channel(GENERAL)
        yield d


def item(text: str, channel: str = DM, **fields: object) -> OutboxItem:
    values: dict[str, object] = {
        "seq": 1,
        "message_id": "m1",
        "channel": "slack",
        "channel_id": channel,
        "thread_id": None,
        "reply_to": None,
        "part": 0,
        "parts": 1,
        "text": text,
        "attempts": 0,
        "next_attempt_at": 0.0,
    }
    values.update(fields)
    return OutboxItem(**values)  # type: ignore[arg-type]


async def test_is_a_channel_with_drafts_and_attachments(double: SlackDouble) -> None:
    socket = SlackChannel(config_for(double))
    events = SlackChannel(config_for(double, mode="events"))
    assert isinstance(socket, Channel | SupportsDrafts | SupportsAttachments)
    assert isinstance(socket, SupportsDrafts) and isinstance(socket, SupportsAttachments)
    assert (socket.exclusive_receiver, events.exclusive_receiver) == (True, False)
    # One lease per Slack app, whatever the channel's other settings; no token in its name.
    other_app = SlackChannel(config_for(double, app_token="xapp-1-A0OTHER-1-other"))
    assert socket.receiver_name == SlackChannel(config_for(double)).receiver_name
    assert socket.receiver_name != other_app.receiver_name
    assert (
        socket.receiver_name.startswith("slack:") and double.app_token not in socket.receiver_name
    )
    assert (socket.webhook_path, events.webhook_path) == ("", "/slack/events")


async def test_start_without_receiving_then_start_and_stop_in_any_order(
    double: SlackDouble,
) -> None:
    channel = SlackChannel(config_for(double), timing=FAST)
    inbox = Inbox()
    await channel.start(inbox, receive=False)
    try:
        assert channel.bot_username == "clanker"
        assert "apps.connections.open" not in [c.method for c in double.calls]
        assert channel.health.state.value == "connected"
        assert channel.health.detail == SENDING_ONLY
        assert channel.health.as_json()["receiving"] is False  # a standby: silence is no stall
        await channel.send(item("sent by a replica that does not receive"))
        assert double.posted[-1].text == "sent by a replica that does not receive"
        await channel.stop_receiving()  # not receiving: nothing to stop
        for round_ in (1, 2):
            await channel.start_receiving()
            await channel.start_receiving()  # again: still one connection
            await double.wait_for(lambda n=round_: double.hellos == n and double.connected == 1)  # type: ignore[misc]
            assert channel.health.detail == ""
            await double.push(double.message(DM, f"round {round_}"))
            await until(lambda n=round_: len(inbox.items) == n)  # type: ignore[misc]
            await channel.stop_receiving()
            await channel.stop_receiving()
            await double.wait_for(lambda: double.connected == 0)
        # Not receiving: an event waits for whoever connects next.
        waiting = await double.push(double.message(DM, "while nobody listens"))
        assert waiting.attempts == 0 and len(inbox.items) == 2
        await channel.start_receiving()
        await double.wait_for(lambda: waiting.acked)
    finally:
        await channel.stop()
    assert [i.message.text for i in inbox.items] == ["round 1", "round 2", "while nobody listens"]
    assert channel.health.state.value == "stopped"


async def test_an_envelope_is_acked_only_after_submit_returned(double: SlackDouble) -> None:
    channel = SlackChannel(config_for(double), timing=FAST)
    inbox = Inbox()
    await channel.start(inbox)
    try:
        inbox.hold.clear()  # the store is slow
        envelope = await double.push(double.message(DM, "store me first"))
        await double.wait_for(lambda: envelope.attempts >= 2)  # no ack: Slack sends it again
        assert not envelope.acked and inbox.items == []
        inbox.hold.set()
        await double.wait_for(lambda: envelope.acked)
        # A failed submit is not acked either: Slack's re-delivery succeeds.
        inbox.fail = 1
        failing = await double.push(double.message(DM, "try again"))
        await double.wait_for(lambda: failing.acked)
        assert failing.attempts >= 2
    finally:
        await channel.stop()
    # Two deliveries arrived while submit was held; the pipeline's dedupe makes them one.
    assert {i.platform_id for i in inbox.items if i.message.text == "store me first"} == {
        f"{DM}:{envelope.payload['event']['ts']}"
    }
    assert [i.message.text for i in inbox.items].count("try again") == 1


async def test_stop_receiving_lets_the_message_being_stored_finish(double: SlackDouble) -> None:
    channel = SlackChannel(config_for(double), timing=FAST)
    inbox = Inbox()
    await channel.start(inbox)
    try:
        inbox.hold.clear()
        envelope = await double.push(double.message(DM, "in flight at shutdown"))
        await until(lambda: envelope.attempts >= 1)
        await asyncio.sleep(0.05)
        stopping = asyncio.create_task(channel.stop_receiving())
        await asyncio.sleep(0.05)
        assert not stopping.done()  # it waits for the message being stored
        inbox.hold.set()
        await stopping
    finally:
        await channel.stop()
    assert envelope.acked
    assert [i.message.text for i in inbox.items] == ["in flight at shutdown"]


def signed(
    double: SlackDouble, body: dict[str, object], **sign: object
) -> tuple[dict[str, str], bytes]:
    raw = json.dumps(body).encode()
    headers = {k.lower(): v for k, v in double.sign(raw, **sign).items()}  # type: ignore[arg-type]
    return headers, raw


async def test_events_api_requests(double: SlackDouble) -> None:
    channel = SlackChannel(config_for(double, mode="events"), timing=FAST)
    inbox = Inbox()
    await channel.start(inbox, receive=False)
    try:
        body = double.callback(double.message(DM, "over http"))
        headers, raw = signed(double, body)
        assert await channel.handle_webhook_request(headers, raw) == (503, None)  # not receiving
        await channel.start_receiving()
        assert await channel.handle_webhook_request(headers, raw) == (200, None)
        challenge = {
            "type": "url_verification",
            "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
            "token": "x",
        }
        h, r = signed(double, challenge)
        assert await channel.handle_webhook_request(h, r) == (
            200,
            {"challenge": challenge["challenge"]},
        )
        bad = {**headers, "x-slack-signature": "v0=" + "0" * 64}
        stale_headers, _ = signed(double, body, timestamp=int(time.time()) - 301)
        other, _ = signed(double, body, secret="not-the-signing-secret")
        for refused in (bad, stale_headers, other, {}):
            assert await channel.handle_webhook_request(refused, raw) == (401, None)
        h, r = {**headers}, b"not json"
        h = {k.lower(): v for k, v in double.sign(r).items()}
        assert await channel.handle_webhook_request(h, r) == (400, None)
        # A store slower than Slack's deadline: 503 at once, the message is still stored.
        inbox.hold.clear()
        slow = double.callback(double.message(DM, "slow store"))
        h, r = signed(double, slow)
        assert await channel.handle_webhook_request(h, r) == (503, None)
        inbox.hold.set()
        await until(lambda: len(inbox.items) == 2)
    finally:
        await channel.stop()
    assert [i.message.text for i in inbox.items] == ["over http", "slow store"]
    assert "apps.connections.open" not in [c.method for c in double.calls]


async def test_send_errors_become_channel_errors(double: SlackDouble) -> None:
    channel = SlackChannel(config_for(double), timing=FAST)
    await channel.start(Inbox(), receive=False)
    try:
        with pytest.raises(ChannelError) as missing:
            await channel.send(item("x", channel="C0NOWHERE1"))
        assert not missing.value.retryable and "invite it" in missing.value.message
        double.fail_next("chat.postMessage", status=429, retry_after=7)
        with pytest.raises(ChannelError) as limited:
            await channel.send(item("x"))
        assert (limited.value.retryable, limited.value.retry_after) == (True, 7.0)
        double.fail_next("chat.postMessage", error="account_inactive")
        with pytest.raises(ChannelError) as inactive:
            await channel.send(item("x"))
        assert inactive.value.retryable and channel.health.state.value == "degraded"
        assert "reinstall the app" in channel.health.detail
        await channel.send(item("fine again"))
        assert channel.health.state.value == "connected"
        # The final answer edits the draft; a draft that is gone is replaced by a new post.
        draft = await channel.draft(DM, None, None, "Thinking **hard** …", None)
        await channel.send(item("The **answer**.", edit_message_id=draft))
        await channel.send(item("Another answer.", edit_message_id="1.000000"))
    finally:
        await channel.stop()
    assert double.posted[-2].ts == draft and double.posted[-2].text == "The **answer**."
    assert double.posted[-2].args["text"] == "Thinking *hard* …"
    assert double.posted[-1].text == "Another answer."
    assert channel.chat_id_problem("C0GENERAL1") is None
    assert channel.chat_id_problem("#general") is not None


async def test_shared_images_are_fetched_with_the_token_only_from_slack(
    double: SlackDouble,
) -> None:
    channel = SlackChannel(config_for(double), timing=FAST)
    await channel.start(Inbox(), receive=False)
    try:
        shared = double.add_file("cat.png", b"\x89PNG-cat", "image/png")
        ref = Attachment(
            id=shared["id"],
            url=f"slack-file:{shared['url_private']}",
            mime_type="image/png",
            size_bytes=9,
        )
        fetched = await channel.fetch_attachment(ref)
        elsewhere = ref.model_copy(update={"url": "slack-file:https://evil.example/steal.png"})
        assert await channel.fetch_attachment(elsewhere) is None  # never sends the token there
    finally:
        await channel.stop()
    assert fetched is not None
    assert fetched.url == "data:image/png;base64," + base64.b64encode(b"\x89PNG-cat").decode()


async def test_a_refused_app_token_degrades_without_leaking_it(double: SlackDouble) -> None:
    channel = SlackChannel(
        config_for(double, app_token="xapp-1-A0-0-refused-app-token"), timing=FAST
    )
    await channel.start(Inbox())
    try:
        await until(lambda: channel.health.state.value == "degraded")
        detail = channel.health.detail
    finally:
        await channel.stop()
    assert "OPENCLAW_SLACK_APP_TOKEN" in detail and "refused-app-token" not in detail
    opened = [c for c in double.calls if c.method == "apps.connections.open"]
    assert opened and {c.error for c in opened} == {"invalid_auth"}


async def test_shutdown_during_start_means_no_receiving(double: SlackDouble) -> None:
    channel = SlackChannel(config_for(double), timing=FAST)
    starting = asyncio.create_task(channel.start(Inbox()))
    await asyncio.sleep(0)  # start is now waiting for auth.test
    await channel.stop_receiving()  # SIGTERM arrived meanwhile
    await starting
    try:
        assert channel.bot_username == "clanker"  # ready to send the replies in flight
        assert "apps.connections.open" not in [c.method for c in double.calls]
        assert double.connected == 0
    finally:
        await channel.stop()
