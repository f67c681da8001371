"""discord.py messages -> our `Inbound` (what is answered, by whom, and in which session)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from open_clanker.channels.discord.library import discord
from open_clanker.core.types import (
    Attachment,
    ChannelType,
    Inbound,
    Message,
    MessageMetadata,
    session_key,
)


@dataclass(frozen=True, slots=True)
class DiscordScope:
    """Where the bot listens: its own id and `[channels.discord]`'s filters."""

    bot_id: int
    guild_id: str = ""
    allowed_channels: frozenset[str] = frozenset()
    require_mention: bool = True


def ignored_reason(msg: discord.Message, scope: DiscordScope) -> str | None:
    """Why a message is not for us (None: it is). Bots, our own messages included, never are."""
    if msg.author.bot or msg.author.id == scope.bot_id or msg.webhook_id is not None:
        return "from a bot"
    if msg.is_system():
        return "system message"
    if msg.guild is not None:
        if scope.guild_id and str(msg.guild.id) != scope.guild_id:
            return "another guild"
        if scope.allowed_channels and not _channel_ids(msg) & scope.allowed_channels:
            return "channel not in allowed_channels"
    if not strip_mention(msg.content, scope.bot_id) and not msg.attachments:
        return "empty"
    return None


def inbound_from_message(msg: discord.Message, scope: DiscordScope) -> Inbound:
    direct = msg.guild is None
    chat_id = str(msg.channel.id)  # a thread is its own channel: the thread id is the session's
    reference = msg.reference
    message = Message(
        channel_type=ChannelType.DISCORD,
        channel_id=chat_id,
        sender=str(msg.author.id),
        text=strip_mention(msg.content, scope.bot_id),
        timestamp=msg.created_at,
        session=session_key(ChannelType.DISCORD, chat_id),
        metadata=MessageMetadata(
            attachments=tuple(_attachment(a) for a in msg.attachments),
            reply_to=str(reference.message_id) if reference and reference.message_id else None,
            mentions=tuple(str(user.id) for user in msg.mentions),
        ),
    )
    parent = getattr(msg.channel, "parent_id", None)
    return Inbound(
        message=message,
        platform_id=str(msg.id),  # snowflakes are unique across Discord
        is_direct=direct,
        addressed=direct or not scope.require_mention or _addresses_bot(msg, scope.bot_id),
        reply_target=str(msg.id),
        parent_id=str(parent) if parent else None,
    )


def strip_mention(content: str, bot_id: int) -> str:
    """The text without the bot's own mention, which the model should not see."""
    return re.sub(rf"<@!?{bot_id}>", " ", content).strip()


def _addresses_bot(msg: discord.Message, bot_id: int) -> bool:
    if bot_id in msg.raw_mentions or any(user.id == bot_id for user in msg.mentions):
        return True
    resolved = msg.reference.resolved if msg.reference is not None else None
    return isinstance(resolved, discord.Message) and resolved.author.id == bot_id


def _channel_ids(msg: discord.Message) -> set[str]:
    """The channel, and for a thread its parent: a thread of an allowed channel is allowed."""
    ids = {str(msg.channel.id)}
    parent = getattr(msg.channel, "parent_id", None)
    if parent:
        ids.add(str(parent))
    return ids


def _attachment(item: discord.Attachment) -> Attachment:
    return Attachment(
        id=str(item.id),
        url=item.url,
        mime_type=item.content_type or "application/octet-stream",
        size_bytes=item.size,
        name=item.filename,
    )
