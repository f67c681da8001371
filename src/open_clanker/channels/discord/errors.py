"""discord.py errors -> our `ChannelError` (the border: nothing above sees `discord.errors`)."""

from __future__ import annotations

from open_clanker.channels.discord.library import discord
from open_clanker.core.errors import ChannelError

CHANNEL = "discord"

# Discord's JSON error codes that no retry will fix.
_UNKNOWN_CHANNEL = 10003
_CANNOT_DM = 50007


def redact(text: str, token: str) -> str:
    return text.replace(token, "[REDACTED]") if token else text


def describe(exc: Exception, token: str) -> str:
    return redact(f"{type(exc).__name__}: {exc}", token)


def channel_error(exc: Exception, token: str) -> ChannelError:
    """Whether a failed call is worth retrying, and how soon, as a calm sentence.

    discord.py already waited out short 429s (up to `max_ratelimit_timeout`) and retried
    500/502/504 a few times; what reaches us is left to the outbox's own backoff.
    """
    detail = describe(exc, token)
    if isinstance(exc, discord.RateLimited):
        return ChannelError(
            f"Discord asked us to slow down for {exc.retry_after:.0f} s.",
            CHANNEL,
            retryable=True,
            retry_after=exc.retry_after,
        )
    if isinstance(exc, discord.DiscordServerError):
        return ChannelError(f"Discord had a server error ({detail}).", CHANNEL, retryable=True)
    if isinstance(exc, discord.Forbidden):
        return ChannelError(
            f"Discord refused the message: the bot lacks permission in that channel, or the "
            f"user does not accept messages from it ({detail}).",
            CHANNEL,
            retryable=False,
        )
    if isinstance(exc, discord.NotFound) or (
        isinstance(exc, discord.HTTPException) and exc.code in (_UNKNOWN_CHANNEL, _CANNOT_DM)
    ):
        return ChannelError(
            f"Discord does not know that channel or message ({detail}).", CHANNEL, retryable=False
        )
    if isinstance(exc, discord.HTTPException):
        if exc.status == 429 or exc.status >= 500:
            return ChannelError(f"Discord failed ({detail}).", CHANNEL, retryable=True)
        return ChannelError(f"Discord rejected the request ({detail}).", CHANNEL, retryable=False)
    # Connection errors, timeouts, a client not connected yet: worth another try.
    return ChannelError(f"Could not reach Discord ({detail}).", CHANNEL, retryable=True)
