"""slack_sdk errors -> our `ChannelError` and operator-facing fixes (the border: nothing above
sees `slack_sdk.errors`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError

from open_clanker.core.errors import ChannelError

CHANNEL = "slack"

# Only the operator can fix these: the channel is reported degraded, naming what to do.
AUTH_ERRORS = frozenset(
    {
        "invalid_auth",
        "not_authed",
        "account_inactive",
        "token_revoked",
        "token_expired",
        "missing_scope",
        "not_allowed_token_type",
        "no_permission",
        "team_access_not_granted",
    }
)
# Worth another try: Slack said so, or it failed on its side.
_TRANSIENT = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)
# The message can never be delivered as it is.
_HOPELESS = frozenset(
    {
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "msg_too_long",
        "no_text",
        "restricted_action",
        "cannot_reply_to_message",
        "invalid_arguments",
        "message_not_found",
        "cant_update_message",
        "edit_window_closed",
        "user_not_found",
        "thread_not_found",
    }
)
TRANSPORT_ERRORS = (aiohttp.ClientError, OSError, TimeoutError, SlackClientError)

TokenKind = Literal["bot", "app"]


def error_code(exc: SlackApiError) -> str:
    data = _data(exc)
    code = data.get("error")
    if isinstance(code, str) and code:
        return code
    status = getattr(exc.response, "status_code", 0)
    return "ratelimited" if status == 429 else f"http_{status}"


def status_of(exc: SlackApiError) -> int:
    return int(getattr(exc.response, "status_code", 0) or 0)


def retry_after_s(exc: SlackApiError) -> float | None:
    headers = getattr(exc.response, "headers", None) or {}
    value = headers.get("Retry-After") if hasattr(headers, "get") else None
    try:
        return max(float(value), 0.0) if value is not None else None
    except ValueError:
        return None


def fix_for(code: str, kind: TokenKind = "bot", needed: str = "") -> str:
    """A calm sentence naming what the operator should change."""
    if kind == "app":
        setting = "OPENCLAW_SLACK_APP_TOKEN or [channels.slack].app_token"
        if code == "not_allowed_token_type":
            return (
                f"Slack did not accept the app-level token ({code}): {setting} must be an "
                "xapp-… token (Basic Information -> App-Level Tokens), not the bot token."
            )
        if code == "missing_scope":
            return (
                f"The app-level token lacks the connections:write scope ({code}): make a new "
                f"one with it under Basic Information -> App-Level Tokens and set {setting}."
            )
        return f"Slack refused the app-level token ({code}): check {setting} (an xapp-… token)."
    setting = "OPENCLAW_SLACK_BOT_TOKEN or [channels.slack].bot_token"
    if code == "account_inactive":
        return (
            f"Slack says the bot's account is inactive ({code}): the app was uninstalled or "
            f"the workspace deactivated; reinstall the app and update {setting}."
        )
    if code == "missing_scope":
        scope = f"the {needed} scope" if needed else "a scope it needs"
        return (
            f"The Slack app lacks {scope} ({code}): add it under OAuth & Permissions "
            "(deploy/slack-app-manifest.yml lists every scope) and reinstall the app."
        )
    if code == "not_allowed_token_type":
        return f"Slack did not accept the bot token ({code}): {setting} must be an xoxb-… token."
    return f"Slack refused the bot token ({code}): check {setting} (an xoxb-… token)."


def redact(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[REDACTED]")
    return text


def describe(exc: Exception, secrets: Iterable[str] = ()) -> str:
    if isinstance(exc, SlackApiError):
        return f"{error_code(exc)} (HTTP {status_of(exc)})"
    return redact(f"{type(exc).__name__}: {exc}", secrets)


def channel_error(exc: Exception, secrets: Iterable[str] = ()) -> ChannelError:
    """Whether a failed call is worth retrying from the outbox, and how soon."""
    if not isinstance(exc, SlackApiError):
        return ChannelError(
            f"Could not reach Slack ({describe(exc, secrets)}).", CHANNEL, retryable=True
        )
    code, status = error_code(exc), status_of(exc)
    if status == 429 or code == "ratelimited":
        wait = retry_after_s(exc)
        return ChannelError(
            f"Slack asked us to slow down for {wait or 1:.0f} s.",
            CHANNEL,
            retryable=True,
            retry_after=wait,
        )
    if status >= 500 or code in _TRANSIENT:
        return ChannelError(f"Slack had a server error ({code}).", CHANNEL, retryable=True)
    if code in AUTH_ERRORS:
        # Retried: once the operator fixes the token or scope, the reply still arrives.
        needed = str(_data(exc).get("needed") or "")
        return ChannelError(fix_for(code, "bot", needed), CHANNEL, retryable=True)
    if code in ("channel_not_found", "not_in_channel", "is_archived"):
        return ChannelError(
            f"Slack refused the message ({code}): the channel does not exist, is archived, "
            "or the bot is not in it (invite it with /invite @<bot name>).",
            CHANNEL,
            retryable=False,
        )
    if code in _HOPELESS:
        return ChannelError(f"Slack refused the message ({code}).", CHANNEL, retryable=False)
    return ChannelError(f"Slack rejected the request ({code}).", CHANNEL, retryable=False)


def _data(exc: SlackApiError) -> dict[str, Any]:
    data = getattr(exc.response, "data", None)
    return data if isinstance(data, dict) else {}
