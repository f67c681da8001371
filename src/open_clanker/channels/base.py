"""What a chat platform adapter offers the pipeline, and how it reports its health."""

from __future__ import annotations

import enum
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

from open_clanker.core.types import Attachment, ChannelType, Inbound
from open_clanker.storage.outbox import OutboxItem

# How an adapter hands a platform event to the pipeline. It returns once the message is
# accepted for processing (not when it is answered), so adapters never block on the model.
Submit = Callable[[Inbound], Awaitable[None]]


class ChannelState(enum.StrEnum):
    STARTING = "starting"
    CONNECTED = "connected"
    DEGRADED = "degraded"
    STOPPED = "stopped"


@dataclass
class ChannelHealth:
    """Mutable health an adapter keeps up to date; `/ready` and `/api/v1/status` read it."""

    state: ChannelState = ChannelState.STARTING
    last_contact: float | None = None
    detail: str = ""
    # False on a standby replica: another replica holds the connection's lease and receives,
    # so silence here is expected and not a stall.
    receiving: bool = True

    def contact(self) -> None:
        self.last_contact = time.time()
        if self.state is not ChannelState.CONNECTED:
            self.state = ChannelState.CONNECTED
            self.detail = ""

    def degrade(self, detail: str) -> None:
        self.state = ChannelState.DEGRADED
        self.detail = detail

    def as_json(self, stall_after_s: float = 60.0) -> dict[str, object]:
        state = self.state
        detail = self.detail
        # A channel that has been silent too long is degraded whatever it last said.
        if (
            state is ChannelState.CONNECTED
            and self.receiving
            and self.last_contact is not None
            and time.time() - self.last_contact > stall_after_s
        ):
            state, detail = ChannelState.DEGRADED, "no contact with the platform for over a minute"
        last = (
            datetime.fromtimestamp(self.last_contact, UTC).isoformat()
            if self.last_contact is not None
            else None
        )
        return {
            "state": state.value,
            "last_contact": last,
            "detail": detail,
            "receiving": self.receiving,
        }


@runtime_checkable
class Channel(Protocol):
    """A platform adapter. `send` raises `ChannelError` (retryable or not) on failure."""

    type: ChannelType
    health: ChannelHealth

    def split(self, text: str) -> list[str]:
        """Cut a reply into parts the platform accepts, in order."""
        ...

    async def send(self, item: OutboxItem) -> None: ...

    async def start(self, submit: Submit, *, receive: bool = True) -> None:
        """Connect for sending; receive platform events only when `receive` (a channel whose
        connection is leased starts receiving when its replica takes the lease)."""
        ...

    async def stop_receiving(self) -> None:
        """Stop taking new platform events (shutdown has begun); sending keeps working until
        `stop()`, so replies to messages already accepted are still delivered."""
        ...

    async def stop(self) -> None: ...


@runtime_checkable
class SupportsTyping(Protocol):
    """Optional: show "typing…" in a chat while the model works."""

    async def typing(self, chat_id: str, thread_id: str | None) -> None: ...


@runtime_checkable
class SupportsDrafts(Protocol):
    """Optional: show a reply while it streams, as one platform message edited in place.

    The stored reply's first part is later delivered by editing that same message
    (`OutboxItem.edit_message_id`), so the user never sees the answer twice.
    """

    async def draft(
        self,
        chat_id: str,
        thread_id: str | None,
        reply_to: str | None,
        text: str,
        message_id: str | None,
    ) -> str:
        """Send (message_id None) or edit the draft; returns its platform message id."""
        ...


@runtime_checkable
class SupportsAttachments(Protocol):
    """Optional: turn a platform file reference into something a model vendor can open."""

    async def fetch_attachment(self, attachment: Attachment) -> Attachment | None:
        """A copy with a `data:` URL (bounded in size), or None when it cannot be fetched."""
        ...


@runtime_checkable
class ChecksChatIds(Protocol):
    """Optional: say up front that a chat id cannot exist on the platform (operator sends)."""

    def chat_id_problem(self, chat_id: str) -> str | None: ...


@dataclass
class Channels:
    """The enabled push channels by type (web chat and API answer in their own response)."""

    by_type: dict[ChannelType, Channel]

    def get(self, channel: ChannelType | str) -> Channel | None:
        try:
            return self.by_type.get(ChannelType(channel))
        except ValueError:
            return None

    def __iter__(self) -> Iterator[Channel]:
        return iter(self.by_type.values())
