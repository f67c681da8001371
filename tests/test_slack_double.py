"""The Slack double driven by slack_sdk itself: `AsyncWebClient`, the aiohttp `SocketModeClient`
and `SignatureVerifier` against loopback, so that what the channel's tests prove holds for Slack."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient

from tests.doubles.slack_double import BOT_ID, BOT_USER_ID, TEAM_ID, SlackDouble

GENERAL = "C0GENERAL1"


@pytest.fixture
async def double() -> AsyncIterator[SlackDouble]:
    async with SlackDouble(ack_timeout_s=0.4, refresh_grace_s=0.3) as d:
        d.add_channel(GENERAL)
        yield d


def api(double: SlackDouble, token: str | None = None, **options: Any) -> AsyncWebClient:
    return AsyncWebClient(
        token=token if token is not None else double.bot_token,
        base_url=double.api_base_url + "/",
        **options,
    )


async def test_auth_test_and_wrong_tokens(double: SlackDouble) -> None:
    me = await api(double).auth_test()
    assert (me["user_id"], me["bot_id"], me["team_id"]) == (BOT_USER_ID, BOT_ID, TEAM_ID)
    assert "chat:write" in me.headers["X-OAuth-Scopes"]
    with pytest.raises(SlackApiError) as refused:
        await api(double, "xoxb-not-the-token").auth_test()
    assert refused.value.response["error"] == "invalid_auth"
    assert refused.value.response.status_code == 200  # Slack's errors are HTTP 200, ok: false
    with pytest.raises(SlackApiError) as app_token:
        await api(double, double.app_token).auth_test()
    assert app_token.value.response["error"] == "not_allowed_token_type"


async def test_post_update_and_the_errors_slack_gives(double: SlackDouble) -> None:
    client = api(double)
    sent = await client.chat_postMessage(channel=GENERAL, text="hello *there*", thread_ts="1.5")
    assert sent["ts"] and sent["message"]["bot_id"] == BOT_ID
    await client.chat_update(channel=GENERAL, ts=sent["ts"], text="edited")
    (posted,) = double.posted
    assert (posted.text, posted.thread_ts, posted.edits) == ("edited", "1.5", ["edited"])
    for method, args, error in [
        ("chat.postMessage", {"channel": "C0NOWHERE1", "text": "x"}, "channel_not_found"),
        ("chat.postMessage", {"channel": GENERAL, "text": " "}, "no_text"),
        ("chat.postMessage", {"channel": GENERAL, "text": "x" * 40_001}, "msg_too_long"),
        ("chat.update", {"channel": GENERAL, "ts": "9.9", "text": "x"}, "message_not_found"),
    ]:
        with pytest.raises(SlackApiError) as failed:
            await client.api_call(method, json=args)
        assert failed.value.response["ok"] is False
        assert failed.value.response["error"] == error
    double.fail_next("chat.postMessage", error="missing_scope", needed="chat:write")
    with pytest.raises(SlackApiError) as scope:
        await client.chat_postMessage(channel=GENERAL, text="x")
    assert scope.value.response["needed"] == "chat:write"


async def test_429_carries_retry_after_and_slack_sdk_honours_it(double: SlackDouble) -> None:
    double.fail_next("chat.postMessage", status=429, retry_after=1)
    with pytest.raises(SlackApiError) as limited:
        await api(double).chat_postMessage(channel=GENERAL, text="x")
    assert limited.value.response.status_code == 429
    assert limited.value.response["error"] == "ratelimited"
    assert limited.value.response.headers["Retry-After"] == "1"
    # slack_sdk's own rate-limit handler reads the same shape: it waits and succeeds.
    double.fail_next("chat.postMessage", status=429, retry_after=0)
    handler = AsyncRateLimitErrorRetryHandler(max_retry_count=1)
    sent = await api(double, retry_handlers=[handler]).chat_postMessage(channel=GENERAL, text="y")
    assert sent["ok"] and [p.text for p in double.posted] == ["y"]
    double.fail_next("chat.postMessage", status=503)
    with pytest.raises(SlackApiError) as down:
        await api(double).chat_postMessage(channel=GENERAL, text="z")
    assert down.value.response.status_code == 503


class Receiver:
    """A real SocketModeClient that records every request and acks only when told to."""

    def __init__(self, double: SlackDouble, *, ack: bool = True) -> None:
        self.client = SocketModeClient(
            double.app_token, web_client=api(double, ""), ping_interval=0.2
        )
        self.requests: asyncio.Queue[SocketModeRequest] = asyncio.Queue()
        self.frames: list[dict[str, Any]] = []
        self.ack = ack
        self.client.socket_mode_request_listeners.append(self._on_request)
        self.client.message_listeners.append(self._on_message)

    async def _on_request(self, client: Any, req: SocketModeRequest) -> None:
        self.requests.put_nowait(req)
        if self.ack:
            await client.send_socket_mode_response(SocketModeResponse(req.envelope_id))

    async def _on_message(self, client: Any, message: dict[str, Any], raw: str | None) -> None:
        self.frames.append(message)

    async def next(self) -> SocketModeRequest:
        return await asyncio.wait_for(self.requests.get(), 5)


@contextlib.asynccontextmanager
async def receiving(double: SlackDouble, **options: Any) -> AsyncIterator[Receiver]:
    receiver = Receiver(double, **options)
    await receiver.client.connect()
    try:
        await double.wait_for(lambda: double.hellos >= 1, 5)
        yield receiver
    finally:
        await receiver.client.close()


async def test_socket_mode_hello_envelope_and_ack(double: SlackDouble) -> None:
    async with receiving(double) as rx:
        envelope = await double.push(double.message(GENERAL, "hi <@U0BOTUSER1>"))
        req = await rx.next()
        await double.wait_for(lambda: envelope.acked, 5)
    assert rx.frames[0]["type"] == "hello" and rx.frames[0]["connection_info"]["app_id"]
    assert req.type == "events_api" and req.envelope_id == envelope.envelope_id
    assert req.retry_attempt == 0
    event = req.payload["event"]
    assert (event["type"], event["channel"], event["text"]) == (
        "message",
        GENERAL,
        "hi <@U0BOTUSER1>",
    )
    assert req.payload["type"] == "event_callback"
    # apps.connections.open takes the app-level token and refuses the bot token.
    opened = [c for c in double.calls if c.method == "apps.connections.open"]
    assert [c.token for c in opened] == ["app"]
    with pytest.raises(SlackApiError) as wrong:
        await api(double).apps_connections_open(app_token=double.bot_token)
    assert wrong.value.response["error"] == "not_allowed_token_type"


async def test_an_unacked_envelope_is_delivered_again(double: SlackDouble) -> None:
    async with receiving(double, ack=False) as rx:
        envelope = await double.push(double.message(GENERAL, "anyone?"))
        first, second = await rx.next(), await rx.next()
        rx.ack = True
        third = await rx.next()
        await double.wait_for(lambda: envelope.acked, 5)
    assert {first.envelope_id, second.envelope_id, third.envelope_id} == {envelope.envelope_id}
    assert (first.retry_attempt, second.retry_attempt, third.retry_attempt) == (0, 1, 2)
    assert (second.retry_reason, third.retry_reason) == ("timeout", "timeout")
    await asyncio.sleep(double.ack_timeout_s * 2)
    assert rx.requests.empty()  # acked: no more deliveries


async def test_refresh_requested_makes_slack_sdk_reconnect(double: SlackDouble) -> None:
    async with receiving(double) as rx:
        await double.request_refresh()
        await double.wait_for(lambda: double.hellos >= 2 and double.connected == 1, 10)
        envelope = await double.push(double.message(GENERAL, "after the refresh"))
        req = await rx.next()
        await double.wait_for(lambda: envelope.acked, 5)
    opened = [c for c in double.calls if c.method == "apps.connections.open"]
    assert len(opened) == 2  # a fresh URL for the new connection
    assert req.payload["event"]["text"] == "after the refresh"


async def test_a_dropped_socket_gets_its_unacked_envelopes_again(double: SlackDouble) -> None:
    async with receiving(double, ack=False) as rx:
        envelope = await double.push(double.message(GENERAL, "lost in transit"))
        await rx.next()
        rx.ack = True
        await double.drop()
        await double.wait_for(lambda: double.hellos >= 2, 10)
        again = await rx.next()
        await double.wait_for(lambda: envelope.acked, 5)
    assert again.envelope_id == envelope.envelope_id and again.retry_attempt >= 1


async def test_a_silent_socket_is_noticed_by_slack_sdk(double: SlackDouble) -> None:
    async with receiving(double) as rx:
        async with double.zombie():
            await double.wait_for(lambda: double.connected == 0, 10)
            envelope = await double.push(double.message(GENERAL, "while silent"))
        await double.wait_for(lambda: double.hellos >= 2, 10)
        req = await rx.next()
        await double.wait_for(lambda: envelope.acked, 5)
    assert req.payload["event"]["text"] == "while silent"


async def events_server(status: list[int]) -> tuple[web.AppRunner, str, list[dict[str, Any]]]:
    """A tiny app answering each request with the next status (then 200)."""
    seen: list[dict[str, Any]] = []

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        seen.append({"headers": dict(request.headers), "body": body})
        return web.Response(status=status.pop(0) if status else 200)

    app = web.Application()
    app.router.add_post("/slack/events", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}/slack/events", seen


async def test_events_api_delivery_is_signed_and_retried(double: SlackDouble) -> None:
    runner, url, seen = await events_server([500, 503])
    try:
        body = double.callback(double.message(GENERAL, "over http"))
        deliveries = await double.deliver_http(url, body)
    finally:
        await runner.cleanup()
    assert [(d.attempt, d.status) for d in deliveries] == [(0, 500), (1, 503), (2, 200)]
    verifier = SignatureVerifier(double.signing_secret)
    for request in seen:
        assert verifier.is_valid_request(request["body"], request["headers"])
    assert "X-Slack-Retry-Num" not in seen[0]["headers"]
    assert [r["headers"].get("X-Slack-Retry-Num") for r in seen[1:]] == ["1", "2"]
    assert seen[1]["headers"]["X-Slack-Retry-Reason"] == "http_error"
    assert json.loads(seen[0]["body"])["event"]["text"] == "over http"
    stale = double.sign(b"{}", timestamp=1_000_000_000)
    assert not verifier.is_valid_request(b"{}", stale)


async def test_files_need_the_bot_token(double: SlackDouble) -> None:
    shared = double.add_file("cat.png", b"\x89PNG-bytes", "image/png")
    async with aiohttp.ClientSession() as http:
        async with http.get(shared["url_private"]) as r:
            assert r.content_type == "text/html"  # Slack's sign-in page, not the file
        headers = {"Authorization": f"Bearer {double.bot_token}"}
        async with http.get(shared["url_private"], headers=headers) as r:
            assert await r.read() == b"\x89PNG-bytes"
