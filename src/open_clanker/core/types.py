"""The vocabulary every part of Open Clanker speaks: messages, replies, session keys (SPEC §6)."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, NewType

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from open_clanker.core.text import CleanStr, nul_free
from open_clanker.core.tracing import current_or_new_traceparent

if TYPE_CHECKING:
    from open_clanker.core.client_context import ClientContext

SessionKey = NewType("SessionKey", str)


class ChannelType(enum.StrEnum):
    TELEGRAM = "telegram"
    DISCORD = "discord"
    SLACK = "slack"
    WEBCHAT = "webchat"
    API = "api"
    OPENAI = "openai"  # the OpenAI-compatible API (SPEC §5.1)
    CLI = "cli"


class Role(enum.StrEnum):
    USER = "user"
    ASSISTANT = "assistant"


def new_id() -> str:
    return uuid.uuid4().hex


def utc_now() -> datetime:
    return datetime.now(UTC)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Attachment(_Frozen):
    id: str
    url: str
    mime_type: str = "application/octet-stream"
    size_bytes: int = 0
    name: str = ""


class MessageMetadata(_Frozen):
    attachments: tuple[Attachment, ...] = ()
    reply_to: str | None = None
    mentions: tuple[str, ...] = ()


class Message(_Frozen):
    id: str = Field(default_factory=new_id)
    channel_type: ChannelType
    channel_id: CleanStr
    sender: CleanStr
    role: Role = Role.USER
    text: CleanStr  # NULs stripped here, whichever channel it came from (core/text.py)
    timestamp: datetime = Field(default_factory=utc_now)
    session: Annotated[SessionKey, BeforeValidator(nul_free)]
    metadata: MessageMetadata = MessageMetadata()


class Usage(_Frozen):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class AgentResponse(_Frozen):
    id: str = Field(default_factory=new_id)
    content: CleanStr
    model: str
    provider: str
    finish_reason: str = "stop"
    usage: Usage = Usage()
    latency_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class ChatTurn:
    """One turn of conversation as a provider sees it."""

    role: Role
    text: str
    attachments: tuple[Attachment, ...] = ()


@dataclass(frozen=True, slots=True)
class Inbound:
    """A platform event turned into a Message, plus what only the transport knows.

    `platform_id` is the duplicate key within the channel (Telegram: "chat:message").
    `is_direct` marks a one-to-one chat; `addressed` that a group message mentions or replies
    to the bot. `reply_target` is the platform message id a reply should quote, if any.
    `parent_id` is the channel a thread belongs to: access follows the parent (Discord).
    `client` is an API client's own context and sampling (the OpenAI-compatible API).
    """

    message: Message
    platform_id: str | None = None
    is_direct: bool = True
    addressed: bool = True
    reply_target: str | None = None
    thread_id: str | None = None
    parent_id: str | None = None
    request_id: str = field(default_factory=new_id)
    client: ClientContext | None = None
    # W3C traceparent of the request that brought it, else a new trace (core/tracing.py).
    traceparent: str = field(default_factory=current_or_new_traceparent)


def session_key(channel: ChannelType, chat_id: str, thread_id: str | None = None) -> SessionKey:
    base = f"{channel.value}:{chat_id}"
    return SessionKey(f"{base}:{thread_id}" if thread_id else base)


def client_session_key(name: str | None, default_channel: ChannelType) -> SessionKey:
    """An API/WebSocket client's session name: a bare name means `<channel>:<name>`."""
    if not name:
        return session_key(default_channel, new_id()[:12])
    head = name.split(":", 1)[0]
    if ":" in name and head in ChannelType._value2member_map_:
        return SessionKey(name)
    return session_key(default_channel, name)
