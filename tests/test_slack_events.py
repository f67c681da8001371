"""Slack events -> Inbound, the request signature, and errors -> ChannelError (pure, table tests)."""

from __future__ import annotations

from typing import Any

import pytest
from slack_sdk.errors import SlackApiError

from open_clanker.channels.slack.errors import channel_error, fix_for
from open_clanker.channels.slack.events import (
    SlackScope,
    addressed_without_memory,
    ignored_reason,
    inbound_from_event,
    needs_thread_memory,
    plain_text,
    session_for,
    strip_mention,
)
from open_clanker.channels.slack.signature import sign, signature_problem

BOT = "U0BOTUSER1"
SCOPE = SlackScope(bot_user_id=BOT, bot_id="B0BOTID001")


def event(text: str = "hello", **fields: Any) -> dict[str, Any]:
    base = {
        "type": "message",
        "text": text,
        "user": "U0ALICE001",
        "ts": "1700000000.000100",
        "channel": "C0GENERAL1",
        "channel_type": "channel",
    }
    return {**base, **fields}


@pytest.mark.parametrize(
    ("ev", "reason"),
    [
        (event(), None),
        (event(channel="D0ALICE001", channel_type="im"), None),
        (event(subtype="message_changed"), "subtype message_changed"),
        (event(subtype="channel_join"), "subtype channel_join"),
        (event(subtype="bot_message", bot_id="B0OTHER001"), "subtype bot_message"),
        (event(bot_id="B0OTHER001"), "from a bot"),
        (event(user=BOT, bot_id="B0BOTID001"), "from a bot"),
        (event(user=BOT), "from a bot"),
        (event(bot_profile={"id": "B1"}), "from a bot"),
        (event(text=f"<@{BOT}>"), "empty"),
        (event(text="   "), "empty"),
        (event(subtype="file_share", text="", files=[{"id": "F1", "url_private": "u"}]), None),
        (event(subtype="thread_broadcast", thread_ts="1.0"), None),
        ({"type": "reaction_added"}, "not a message"),
        ("not a dict", "not a message"),
        ({k: v for k, v in event().items() if k != "user"}, "no sender"),
    ],
)
def test_what_is_ignored(ev: Any, reason: str | None) -> None:
    assert ignored_reason(ev, SCOPE) == reason


@pytest.mark.parametrize(
    ("ev", "addressed", "needs_memory", "session", "thread"),
    [
        # a DM: always addressed, its own session, the reply not threaded
        (event(channel="D0ALICE001", channel_type="im"), True, False, "slack:D0ALICE001", None),
        # a thread in a DM stays in the thread
        (
            event(channel="D0ALICE001", channel_type="im", thread_ts="1.5"),
            True,
            False,
            "slack:D0ALICE001:1.5",
            "1.5",
        ),
        # a channel mention starts a thread under the message
        (
            event(f"<@{BOT}> hi"),
            True,
            False,
            "slack:C0GENERAL1:1700000000.000100",
            "1700000000.000100",
        ),
        # app_mention (no channel_type) is a mention in a channel
        (
            {**event("hi"), "type": "app_mention", "channel_type": None},
            True,
            False,
            "slack:C0GENERAL1:1700000000.000100",
            "1700000000.000100",
        ),
        # chatter at the top level: not for us, nothing to look up
        (
            event("just chatting"),
            False,
            False,
            "slack:C0GENERAL1:1700000000.000100",
            "1700000000.000100",
        ),
        # a thread reply without a mention: only if the bot is in that thread
        (event("and then?", thread_ts="1.0"), False, True, "slack:C0GENERAL1:1.0", "1.0"),
        # a group DM is a group
        (
            event("hi", channel="G0GROUP001", channel_type="mpim"),
            False,
            False,
            "slack:G0GROUP001:1700000000.000100",
            "1700000000.000100",
        ),
    ],
)
def test_who_is_addressed_and_which_session(
    ev: dict[str, Any], addressed: bool, needs_memory: bool, session: str, thread: str | None
) -> None:
    assert addressed_without_memory(ev, SCOPE) is addressed
    assert needs_thread_memory(ev, SCOPE) is needs_memory
    assert session_for(ev) == session
    inbound = inbound_from_event(ev, SCOPE)
    assert inbound.thread_id == thread
    assert inbound.message.session == session
    assert inbound.platform_id == f"{ev['channel']}:{ev['ts']}"


def test_without_require_mention_every_channel_message_is_addressed() -> None:
    scope = SlackScope(bot_user_id=BOT, require_mention=False)
    assert addressed_without_memory(event("chatter"), scope)
    assert not needs_thread_memory(event("chatter", thread_ts="1.0"), scope)


def test_the_message_the_model_sees() -> None:
    ev = event(f"<@{BOT}> compare <https://a.org|the site> &amp; <#C0X|random> with <@U0BOB00001>")
    inbound = inbound_from_event(ev, SCOPE)
    msg = inbound.message
    assert msg.text == "compare the site (https://a.org) & #random with @U0BOB00001"
    assert msg.sender == "U0ALICE001" and msg.channel_id == "C0GENERAL1"
    assert msg.metadata.mentions == (BOT, "U0BOB00001")
    assert msg.timestamp.timestamp() == pytest.approx(1700000000.0001)
    assert inbound.is_direct is False


@pytest.mark.parametrize(
    ("text", "plain"),
    [
        ("<https://a.org>", "https://a.org"),
        ("<https://a.org|https://a.org>", "https://a.org"),
        ("<mailto:a@b.org|a@b.org>", "a@b.org"),
        ("<!here> look", "@here look"),
        ("<!subteam^S1|@devs>", "@devs"),
        ("a &lt;b&gt; &amp; c", "a <b> & c"),
    ],
)
def test_plain_text(text: str, plain: str) -> None:
    assert plain_text(text) == plain


def test_strip_mention() -> None:
    assert strip_mention(f"<@{BOT}>  what   now?", BOT) == "what now?"
    assert strip_mention(f"hey <@{BOT}|clanker>, hi", BOT) == "hey , hi"
    assert strip_mention("<@U0OTHER001> hi", BOT) == "<@U0OTHER001> hi"


def test_files_are_kept_as_references() -> None:
    files = [
        {
            "id": "F1",
            "url_private": "https://files.slack.com/a.png",
            "mimetype": "image/png",
            "size": 3,
            "name": "a.png",
        }
    ]
    inbound = inbound_from_event(event("see", subtype="file_share", files=files), SCOPE)
    (attachment,) = inbound.message.metadata.attachments
    assert attachment.url == "slack-file:https://files.slack.com/a.png"
    assert (attachment.mime_type, attachment.size_bytes, attachment.name) == (
        "image/png",
        3,
        "a.png",
    )


SECRET = "8f742231b10e8888abcd99edabcd00d9"
BODY = b'{"type":"event_callback"}'
NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("timestamp", "signature", "problem"),
    [
        ("1700000000", sign(SECRET, "1700000000", BODY), None),
        ("1699999701", sign(SECRET, "1699999701", BODY), None),  # 299 s old
        ("1699999699", sign(SECRET, "1699999699", BODY), "stale timestamp"),  # 301 s
        ("1700000301", sign(SECRET, "1700000301", BODY), "stale timestamp"),  # from the future
        ("1700000000", sign("other-secret", "1700000000", BODY), "bad signature"),
        ("1700000000", sign(SECRET, "1700000001", BODY), "bad signature"),  # timestamp swapped
        ("1700000000", "v0=" + "0" * 64, "bad signature"),
        ("1700000000", "v0=é", "bad signature"),
        (None, sign(SECRET, "1700000000", BODY), "missing signature headers"),
        ("1700000000", None, "missing signature headers"),
        ("-1", "v0=x", "malformed timestamp"),
    ],
)
def test_signature(timestamp: str | None, signature: str | None, problem: str | None) -> None:
    assert signature_problem(SECRET, timestamp, signature, BODY, NOW) == problem


def test_a_body_changed_in_transit_is_refused() -> None:
    good = sign(SECRET, "1700000000", BODY)
    assert signature_problem(SECRET, "1700000000", good, BODY + b" ", NOW) == "bad signature"
    assert signature_problem("", "1700000000", good, BODY, NOW) == "no signing secret configured"


class _Response:
    def __init__(self, status: int, data: dict[str, Any], headers: dict[str, str]) -> None:
        self.status_code, self.data, self.headers = status, data, headers
        self.api_url = "http://127.0.0.1/api/chat.postMessage"


def api_error(
    status: int, error: str | None, headers: dict[str, str] | None = None, **data: Any
) -> SlackApiError:
    body = {"ok": False, **({"error": error} if error else {}), **data}
    return SlackApiError("failed", _Response(status, body, headers or {}))


@pytest.mark.parametrize(
    ("exc", "retryable", "retry_after", "says"),
    [
        (api_error(429, "ratelimited", {"Retry-After": "7"}), True, 7.0, "slow down for 7 s"),
        (api_error(503, None), True, None, "server error (http_503)"),
        (api_error(200, "internal_error"), True, None, "server error"),
        (api_error(200, "invalid_auth"), True, None, "OPENCLAW_SLACK_BOT_TOKEN"),
        (api_error(200, "account_inactive"), True, None, "reinstall the app"),
        (api_error(200, "missing_scope", needed="chat:write"), True, None, "the chat:write scope"),
        (api_error(200, "channel_not_found"), False, None, "channel_not_found"),
        (api_error(200, "not_in_channel"), False, None, "not_in_channel"),
        (api_error(200, "invalid_blocks"), False, None, "invalid_blocks"),
        (TimeoutError(), True, None, "Could not reach Slack"),
    ],
)
def test_errors_become_channel_errors(
    exc: Exception, retryable: bool, retry_after: float | None, says: str
) -> None:
    error = channel_error(exc, ("xoxb-secret",))
    assert error.retryable is retryable
    assert error.retry_after == retry_after
    assert says in error.message
    assert error.channel == "slack"


def test_app_token_fixes_name_the_app_token() -> None:
    assert "OPENCLAW_SLACK_APP_TOKEN" in fix_for("invalid_auth", "app")
    assert "xapp-" in fix_for("not_allowed_token_type", "app")
    assert "connections:write" in fix_for("missing_scope", "app")
    assert "OPENCLAW_SLACK_BOT_TOKEN" in fix_for("token_revoked", "bot")


def test_secrets_never_reach_an_error_message() -> None:
    error = channel_error(OSError("connect failed for xoxb-secret-value"), ("xoxb-secret-value",))
    assert "xoxb-secret-value" not in error.message
