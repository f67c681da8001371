"""python-telegram-bot errors -> our `ChannelError` (the border: nothing above sees `telegram.error`)."""

from __future__ import annotations

import datetime as dt

from telegram.error import (
    BadRequest,
    ChatMigrated,
    Conflict,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)

from open_clanker.core.errors import ChannelError

CHANNEL = "telegram"


def redact(text: str, token: str) -> str:
    """Error texts can echo a URL or the token itself; the token must never leave the adapter."""
    return text.replace(token, "[REDACTED]") if token else text


def retry_after_s(exc: RetryAfter) -> float:
    value: int | float | dt.timedelta = exc.retry_after
    return value.total_seconds() if isinstance(value, dt.timedelta) else float(value)


def describe(exc: TelegramError, token: str) -> str:
    return redact(f"{type(exc).__name__}: {exc.message}", token)


def is_entity_error(exc: TelegramError) -> bool:
    return isinstance(exc, BadRequest) and "can't parse entities" in exc.message.lower()


def channel_error(exc: TelegramError, token: str) -> ChannelError:
    """Whether a failed call is worth retrying, and how soon, as a calm sentence."""
    detail = describe(exc, token)
    if isinstance(exc, RetryAfter):
        wait = retry_after_s(exc)
        return ChannelError(
            f"Telegram asked us to slow down for {wait:.0f} s.",
            CHANNEL,
            retryable=True,
            retry_after=wait,
        )
    if isinstance(exc, Forbidden):
        return ChannelError(
            f"Telegram refused the message: the bot was blocked or removed ({detail}).",
            CHANNEL,
            retryable=False,
        )
    if isinstance(exc, ChatMigrated):
        return ChannelError(
            f"The chat became a supergroup with id {exc.new_chat_id}; the message was not sent.",
            CHANNEL,
            retryable=False,
        )
    if isinstance(exc, BadRequest):
        return ChannelError(f"Telegram rejected the message ({detail}).", CHANNEL, retryable=False)
    if isinstance(exc, TimedOut | NetworkError):  # after BadRequest, which is a NetworkError
        return ChannelError(f"Telegram could not be reached ({detail}).", CHANNEL, retryable=True)
    if isinstance(exc, InvalidToken):
        return ChannelError(
            "Telegram refused the bot token; check [channels.telegram].bot_token.",
            CHANNEL,
            retryable=True,
        )
    if isinstance(exc, Conflict):
        return ChannelError(f"Telegram reported a conflict ({detail}).", CHANNEL, retryable=True)
    return ChannelError(f"Telegram failed ({detail}).", CHANNEL, retryable=True)
