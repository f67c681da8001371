"""A Telegram update -> an `Inbound` for the pipeline, or None for what we do not answer (pure)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from telegram import Message as TgMessage
from telegram import MessageEntity, Update

from open_clanker.core.types import (
    Attachment,
    ChannelType,
    Inbound,
    Message,
    MessageMetadata,
    session_key,
    utc_now,
)

# The update kinds we ask Telegram for (edits arrive only so that we can say we skip them).
ALLOWED_UPDATES = ("message", "edited_message")

# A gateway-safe reference to a file: resolving it needs the bot token, which is never stored.
FILE_REF_PREFIX = "telegram-file:"


@dataclass(frozen=True, slots=True)
class BotIdentity:
    """Who the bot is, from getMe: needed to tell whether a group message addresses it."""

    id: int | None
    username: str | None


def ignored_reason(update: Update) -> str | None:
    """Why an update is skipped on purpose, for the log; None when it may carry a message."""
    if update.edited_message is not None or update.edited_channel_post is not None:
        return "edited_message"
    if update.message is None:
        return "not_a_message"
    return None


def inbound_from_update(update: Update, bot: BotIdentity) -> Inbound | None:
    """The pipeline's view of a new message; None for edits, service messages and the like."""
    if ignored_reason(update) is not None or update.message is None:
        return None
    msg = update.message
    user = msg.from_user
    if user is None or user.is_bot:
        return None
    text = msg.text if msg.text is not None else (msg.caption or "")
    attachments = _attachments(msg)
    if not text.strip() and not attachments:
        return None

    entities = msg.parse_entities() if msg.text is not None else msg.parse_caption_entities()
    mentions = tuple(_mentions(entities))
    mentioned = _mentions_bot(entities, bot)
    command = _command_for_us(entities, bot)
    reply_to = _reply_to(msg)
    replied_to_bot = (
        reply_to is not None
        and msg.reply_to_message is not None
        and msg.reply_to_message.from_user is not None
        and _is_bot(msg.reply_to_message.from_user.id, msg.reply_to_message.from_user.username, bot)
    )

    chat_id = str(msg.chat.id)
    is_direct = msg.chat.type == "private"
    thread_id = (
        str(msg.message_thread_id) if msg.is_topic_message and msg.message_thread_id else None
    )
    if not is_direct and mentioned and bot.username:
        text = strip_mention(text, bot.username)

    message = Message(
        channel_type=ChannelType.TELEGRAM,
        channel_id=chat_id,
        sender=str(user.id),
        text=text,
        # Telegram always sends a date; a forged webhook body may not (the fuzz test found it).
        timestamp=msg.date if isinstance(msg.date, datetime) else utc_now(),
        session=session_key(ChannelType.TELEGRAM, chat_id, thread_id),
        metadata=MessageMetadata(attachments=attachments, reply_to=reply_to, mentions=mentions),
    )
    return Inbound(
        message=message,
        platform_id=f"{chat_id}:{msg.message_id}",
        is_direct=is_direct,
        addressed=is_direct or mentioned or replied_to_bot or command,
        reply_target=None if is_direct else str(msg.message_id),
        thread_id=thread_id,
    )


def strip_mention(text: str, username: str) -> str:
    """`@MyBot what is 2+2?` -> `what is 2+2?` (a `/cmd@MyBot` is left for the command parser)."""
    pattern = re.compile(rf"(?<![\w/@])@{re.escape(username)}\b", re.IGNORECASE)
    stripped = pattern.sub("", text)
    return re.sub(r"[ \t]{2,}", " ", stripped).strip()


def _is_bot(user_id: int, username: str | None, bot: BotIdentity) -> bool:
    if bot.id is not None:
        return user_id == bot.id
    return bool(username and bot.username and username.lower() == bot.username.lower())


def _mentions(entities: dict[MessageEntity, str]) -> list[str]:
    names: list[str] = []
    for entity, value in sorted(entities.items(), key=lambda kv: kv[0].offset):
        if entity.type == MessageEntity.MENTION:
            names.append(value.lstrip("@"))
        elif entity.type == MessageEntity.TEXT_MENTION and entity.user is not None:
            names.append(entity.user.username or str(entity.user.id))
    return names


def _mentions_bot(entities: dict[MessageEntity, str], bot: BotIdentity) -> bool:
    for entity, value in entities.items():
        if entity.type == MessageEntity.MENTION:
            if bot.username and value.lstrip("@").lower() == bot.username.lower():
                return True
        elif (
            entity.type == MessageEntity.TEXT_MENTION
            and entity.user is not None
            and _is_bot(entity.user.id, entity.user.username, bot)
        ):
            return True
    return False


def _command_for_us(entities: dict[MessageEntity, str], bot: BotIdentity) -> bool:
    for entity, value in entities.items():
        if entity.type == MessageEntity.BOT_COMMAND and entity.offset == 0:
            _, _, target = value.partition("@")
            return not target or (
                bot.username is not None and target.lower() == bot.username.lower()
            )
    return False


def _reply_to(msg: TgMessage) -> str | None:
    replied = msg.reply_to_message
    if replied is None:
        return None
    # In a forum topic every message "replies" to the topic's first message; that is no reply.
    if msg.is_topic_message and replied.message_id == msg.message_thread_id:
        return None
    return str(replied.message_id)


def _ref(file_id: str) -> str:
    return f"{FILE_REF_PREFIX}{file_id}"


def _file(file: Any, mime_default: str) -> Attachment:
    """An Attachment for any Telegram file object (document, voice, audio, video, photo size)."""
    return Attachment(
        id=file.file_id,
        url=_ref(file.file_id),
        mime_type=getattr(file, "mime_type", None) or mime_default,
        size_bytes=file.file_size or 0,
        name=getattr(file, "file_name", None) or "",
    )


# Attribute of a Telegram message holding a file, and the MIME type Telegram implies for it.
_FILE_KINDS = (
    ("document", "application/octet-stream"),
    ("voice", "audio/ogg"),
    ("audio", "audio/mpeg"),
    ("video", "video/mp4"),
)


def _attachments(msg: TgMessage) -> tuple[Attachment, ...]:
    found: list[Attachment] = []
    if msg.photo:  # sizes of one photo: the largest is the one worth keeping (always JPEG)
        largest = max(msg.photo, key=lambda p: (p.width * p.height, p.file_size or 0))
        found.append(_file(largest, "image/jpeg"))
    for attr, mime_default in _FILE_KINDS:
        file = getattr(msg, attr)
        if file is not None:
            found.append(_file(file, mime_default))
    return tuple(found)
