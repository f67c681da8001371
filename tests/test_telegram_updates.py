"""Telegram update -> Inbound: a pure mapping, tested as a table."""

from __future__ import annotations

from typing import Any

import pytest
from telegram import Update

from open_clanker.channels.telegram.updates import BotIdentity, inbound_from_update, strip_mention
from open_clanker.core.types import Inbound
from tests.doubles.telegram_double import BOT_ID, BOT_USERNAME, message, update, user

BOT = BotIdentity(BOT_ID, BOT_USERNAME)
BOT_USER = {"id": BOT_ID, "is_bot": True, "first_name": "Clanker", "username": BOT_USERNAME}


def inbound(body: dict[str, Any], bot: BotIdentity = BOT) -> Inbound | None:
    body.setdefault("update_id", 1)
    return inbound_from_update(Update.de_json(body, None), bot)


def must(body: dict[str, Any]) -> Inbound:
    result = inbound(body)
    assert result is not None
    return result


def test_private_message() -> None:
    got = must(update(message("hello", chat_id=42, message_id=7, sender=user(42))))
    assert got.platform_id == "42:7"
    assert got.is_direct is True
    assert got.addressed is True
    assert got.reply_target is None
    assert got.thread_id is None
    msg = got.message
    assert (msg.channel_type.value, msg.channel_id, msg.sender, msg.text) == (
        "telegram",
        "42",
        "42",
        "hello",
    )
    assert msg.session == "telegram:42"
    assert msg.timestamp.tzinfo is not None


GROUP = -100123


@pytest.mark.parametrize(
    ("text", "extra", "addressed", "expected_text"),
    [
        ("just chatting", {}, False, "just chatting"),
        (f"@{BOT_USERNAME} what is 2+2?", {}, True, "what is 2+2?"),
        (f"hey @{BOT_USERNAME.upper()} help", {}, True, "hey help"),
        ("@someone_else hi", {}, False, "@someone_else hi"),
        ("/help", {}, True, "/help"),
        (f"/help@{BOT_USERNAME}", {}, True, f"/help@{BOT_USERNAME}"),
        ("/help@OtherBot", {}, False, "/help@OtherBot"),
        ("thanks", {"reply_to_message": message("earlier", chat_id=GROUP, chat_type="supergroup", sender=BOT_USER)}, True, "thanks"),
        ("thanks", {"reply_to_message": message("earlier", chat_id=GROUP, chat_type="supergroup", sender=user(5, "bob"))}, False, "thanks"),
    ],
)  # fmt: skip
def test_group_addressing(
    text: str, extra: dict[str, Any], addressed: bool, expected_text: str
) -> None:
    got = must(update(message(text, chat_id=GROUP, chat_type="supergroup", message_id=31, **extra)))
    assert got.is_direct is False
    assert got.addressed is addressed
    assert got.message.text == expected_text
    assert got.reply_target == "31"
    assert got.platform_id == f"{GROUP}:31"


def test_plain_group_type_too() -> None:
    got = must(update(message(f"@{BOT_USERNAME} hi", chat_id=-5, chat_type="group")))
    assert (got.is_direct, got.addressed, got.message.text) == (False, True, "hi")


def test_text_mention_of_the_bot() -> None:
    entities = [{"type": "text_mention", "offset": 0, "length": 7, "user": BOT_USER}]
    got = must(
        update(message("Clanker hi", chat_id=GROUP, chat_type="supergroup", entities=entities))
    )
    assert got.addressed is True
    assert got.message.metadata.mentions == (BOT_USERNAME,)


def test_mentions_and_reply_metadata() -> None:
    replied = message("q", chat_id=42, message_id=3)
    got = must(update(message("cc @bob and @carol", chat_id=42, reply_to_message=replied)))
    assert got.message.metadata.mentions == ("bob", "carol")
    assert got.message.metadata.reply_to == "3"


def test_forum_topic_joins_the_session_key() -> None:
    root = message(None, chat_id=GROUP, chat_type="supergroup", message_id=77)
    body = message(
        f"@{BOT_USERNAME} hi",
        chat_id=GROUP,
        chat_type="supergroup",
        message_thread_id=77,
        is_topic_message=True,
        reply_to_message=root,
    )
    got = must(update(body))
    assert got.thread_id == "77"
    assert got.message.session == f"telegram:{GROUP}:77"
    assert got.message.metadata.reply_to is None  # the topic root is no real reply


def test_thread_id_without_topic_is_not_a_session() -> None:
    body = message("hi", chat_id=42, message_thread_id=9)
    got = must(update(body))
    assert got.thread_id is None
    assert got.message.session == "telegram:42"


def test_edited_message_is_ignored() -> None:
    assert inbound(update(message("changed"), kind="edited_message")) is None


@pytest.mark.parametrize(
    "body",
    [
        update(message(None, new_chat_title="x")),  # a service message
        update(message("from a bot", sender={"id": 5, "is_bot": True, "first_name": "B"})),
        {"update_id": 3, "channel_post": message("post", chat_id=-1001, chat_type="channel")},
        update(message(None, sticker=None)),
    ],
)
def test_nothing_to_answer(body: dict[str, Any]) -> None:
    assert inbound(body) is None


def test_caption_and_largest_photo() -> None:
    photo = [
        {"file_id": "small", "file_unique_id": "a", "width": 90, "height": 90, "file_size": 100},
        {"file_id": "big", "file_unique_id": "b", "width": 1280, "height": 960, "file_size": 90000},
        {"file_id": "mid", "file_unique_id": "c", "width": 320, "height": 240, "file_size": 9000},
    ]
    got = must(update(message(None, caption="look at this", photo=photo)))
    assert got.message.text == "look at this"
    (att,) = got.message.metadata.attachments
    assert (att.id, att.url, att.mime_type, att.size_bytes) == (
        "big",
        "telegram-file:big",
        "image/jpeg",
        90000,
    )


@pytest.mark.parametrize(
    ("field", "obj", "mime", "name"),
    [
        ("document", {"file_name": "report.pdf", "mime_type": "application/pdf"}, "application/pdf", "report.pdf"),
        ("voice", {"duration": 3}, "audio/ogg", ""),
        ("audio", {"duration": 3, "mime_type": "audio/mpeg", "file_name": "song.mp3"}, "audio/mpeg", "song.mp3"),
        ("video", {"duration": 3, "width": 1, "height": 1}, "video/mp4", ""),
    ],
)  # fmt: skip
def test_file_attachments(field: str, obj: dict[str, Any], mime: str, name: str) -> None:
    body = {"file_id": f"F-{field}", "file_unique_id": "u", "file_size": 321, **obj}
    extra: dict[str, Any] = {field: body}
    got = must(update(message(None, **extra)))
    (att,) = got.message.metadata.attachments
    assert att.id == f"F-{field}"
    assert att.url == f"telegram-file:F-{field}"
    assert (att.mime_type, att.size_bytes, att.name) == (mime, 321, name)
    assert got.message.text == ""


def test_caption_mention_addresses_the_bot_in_groups() -> None:
    caption = f"@{BOT_USERNAME} what is this?"
    doc = {"file_id": "D", "file_unique_id": "u"}
    entities = [{"type": "mention", "offset": 0, "length": len(BOT_USERNAME) + 1}]
    got = must(
        update(
            message(
                None,
                chat_id=GROUP,
                chat_type="supergroup",
                caption=caption,
                caption_entities=entities,
                document=doc,
            )
        )
    )
    assert got.addressed is True
    assert got.message.text == "what is this?"


def test_unknown_bot_identity_addresses_only_direct() -> None:
    body = update(message(f"@{BOT_USERNAME} hi", chat_id=GROUP, chat_type="supergroup"))
    got = inbound(body, BotIdentity(None, None))
    assert got is not None and got.addressed is False


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("@Bot hi", "hi"),
        ("hi @bot", "hi"),
        ("a @bot  b", "a b"),
        ("/start@Bot", "/start@Bot"),
        ("mail x@bot.org", "mail x@bot.org"),
        ("@Botter hi", "@Botter hi"),
    ],
)
def test_strip_mention(text: str, expected: str) -> None:
    assert strip_mention(text, "Bot") == expected
