"""Slack `message` / `app_mention` events -> our `Inbound` (pure: what is answered, by whom, where).

Events are the JSON Slack sends in an `event_callback` (the same body over Socket Mode and the
Events API). Sessions: a DM is `slack:<D…>` (a thread in it `slack:<D…>:<thread_ts>`); in a
channel every conversation is a thread, so a top-level mention starts `slack:<C…>:<its ts>` and
the replies in that thread continue it.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from open_clanker.core.types import (
    Attachment,
    ChannelType,
    Inbound,
    Message,
    MessageMetadata,
    SessionKey,
    session_key,
)

# Message subtypes that carry something a person wrote; every other subtype (edits, deletes,
# joins, bot messages, channel topic changes…) is not answered.
_ANSWERED_SUBTYPES = frozenset({None, "file_share", "thread_broadcast", "me_message"})
_USER_MENTION = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>")
_LINK = re.compile(r"<([^<>|]+)(?:\|([^<>]*))?>")
FILE_REF_PREFIX = "slack-file:"


@dataclass(frozen=True, slots=True)
class SlackScope:
    """Who the bot is (from `auth.test`) and `[channels.slack]`'s mention rule."""

    bot_user_id: str
    bot_id: str = ""
    require_mention: bool = True


def ignored_reason(event: Any, scope: SlackScope) -> str | None:
    """Why an event is not for us (None: it may be). Bots, our own messages included, never are."""
    if not isinstance(event, dict) or event.get("type") not in ("message", "app_mention"):
        return "not a message"
    if event.get("subtype") not in _ANSWERED_SUBTYPES:
        return f"subtype {event.get('subtype')}"
    if event.get("bot_id") or event.get("bot_profile") or event.get("hidden"):
        return "from a bot"
    user = event.get("user")
    if not isinstance(user, str) or not user:
        return "no sender"
    if user == scope.bot_user_id:
        return "from a bot"
    if not isinstance(event.get("channel"), str) or not isinstance(event.get("ts"), str):
        return "no channel or ts"
    if not strip_mention(str(event.get("text") or ""), scope.bot_user_id) and not _files(event):
        return "empty"
    return None


def is_direct(event: dict[str, Any]) -> bool:
    """A one-to-one DM with the bot (a group DM, `mpim`, is a group)."""
    kind = event.get("channel_type")
    if kind is not None:
        return bool(kind == "im")
    return str(event["channel"]).startswith("D")


def mentions_bot(event: dict[str, Any], scope: SlackScope) -> bool:
    return event.get("type") == "app_mention" or scope.bot_user_id in _mentioned(event)


def reply_thread(event: dict[str, Any]) -> str | None:
    """The thread a reply goes to: the event's thread; in a channel, a new one under the message."""
    thread = event.get("thread_ts")
    if isinstance(thread, str) and thread:
        return thread
    return None if is_direct(event) else str(event["ts"])


def session_for(event: dict[str, Any]) -> SessionKey:
    return session_key(ChannelType.SLACK, str(event["channel"]), reply_thread(event))


def needs_thread_memory(event: dict[str, Any], scope: SlackScope) -> bool:
    """A channel message that does not mention the bot, in a thread: answered only if the bot
    already answered in that thread (which only storage can tell)."""
    return (
        scope.require_mention
        and not is_direct(event)
        and not mentions_bot(event, scope)
        and bool(event.get("thread_ts"))
    )


def addressed_without_memory(event: dict[str, Any], scope: SlackScope) -> bool:
    return is_direct(event) or not scope.require_mention or mentions_bot(event, scope)


def inbound_from_event(event: dict[str, Any], scope: SlackScope) -> Inbound:
    channel, ts = str(event["channel"]), str(event["ts"])
    thread = reply_thread(event)
    parent = event.get("thread_ts")
    message = Message(
        channel_type=ChannelType.SLACK,
        channel_id=channel,
        sender=str(event["user"]),
        text=plain_text(strip_mention(str(event.get("text") or ""), scope.bot_user_id)),
        timestamp=_time(ts),
        session=session_key(ChannelType.SLACK, channel, thread),
        metadata=MessageMetadata(
            attachments=_files(event),
            reply_to=str(parent) if parent and parent != ts else None,
            mentions=tuple(_mentioned(event)),
        ),
    )
    return Inbound(
        message=message,
        platform_id=f"{channel}:{ts}",  # ts is unique within a channel
        is_direct=is_direct(event),
        addressed=True,  # the adapter submits only what addresses the bot
        thread_id=thread,
    )


def strip_mention(text: str, bot_user_id: str) -> str:
    """The text without the bot's own `<@U…>` mention, which the model should not see."""
    if not bot_user_id:
        return text.strip()
    stripped = re.sub(rf"<@{re.escape(bot_user_id)}(?:\|[^>]*)?>", " ", text)
    return re.sub(r"[ \t]{2,}", " ", stripped).strip()


def plain_text(mrkdwn: str) -> str:
    """What a person wrote, without Slack's wire markup: `<url|label>` -> `label (url)`,
    `<#C1|general>` -> `#general`, `<@U1>` -> `@U1`, `<!here>` -> `@here`, entities decoded."""

    def link(match: re.Match[str]) -> str:
        target, label = match.group(1), match.group(2)
        if target.startswith("@"):
            return label if label and label.startswith("@") else target
        if target.startswith("#"):
            return f"#{label}" if label else target
        if target.startswith("!"):
            name = target[1:].split("^", 1)[0]
            return label or f"@{name}"
        if label and label != target and label != target.removeprefix("mailto:"):
            return f"{label} ({target})"
        return target.removeprefix("mailto:")

    return html.unescape(_LINK.sub(link, mrkdwn))


def _mentioned(event: dict[str, Any]) -> list[str]:
    found: list[str] = []
    for user in _USER_MENTION.findall(str(event.get("text") or "")):
        if user not in found:
            found.append(user)
    return found


def _time(ts: str) -> datetime:
    try:
        return datetime.fromtimestamp(float(ts), UTC)
    except (ValueError, OverflowError):
        return datetime.now(UTC)


def _files(event: dict[str, Any]) -> tuple[Attachment, ...]:
    """Files shared with the message. Their `url_private` needs the bot token, so it is kept as
    a reference the adapter resolves (`fetch_attachment`), never handed to a model vendor."""
    found: list[Attachment] = []
    for item in event.get("files") or ():
        if not isinstance(item, dict) or not item.get("id") or not item.get("url_private"):
            continue
        found.append(
            Attachment(
                id=str(item["id"]),
                url=f"{FILE_REF_PREFIX}{item['url_private']}",
                mime_type=str(item.get("mimetype") or "application/octet-stream"),
                size_bytes=int(item.get("size") or 0),
                name=str(item.get("name") or ""),
            )
        )
    return tuple(found)
