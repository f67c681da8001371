"""The object one message carries through the stages, and how a stage ends its journey."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Protocol

from open_clanker.core.client_context import client_to_json
from open_clanker.core.errors import ClankerError
from open_clanker.core.types import AgentResponse, Inbound, Message
from open_clanker.storage.claims import Claim


class ReplySink(Protocol):
    """Where streamed text goes as it arrives (web chat, WebSocket, SSE)."""

    async def delta(self, text: str) -> None: ...

    async def reset(self) -> None: ...


class Ending(enum.StrEnum):
    DUPLICATE = "duplicate"  # seen before: nothing happens
    IGNORED = "ignored"  # not for us (group without mention, stranger under allowlist)
    PAIRING = "pairing"  # a stranger got (or had) a pairing code
    REFUSED = "refused"  # too long or too fast; `error` says which
    COMMAND = "command"  # a slash command answered without the model
    ANSWERED = "answered"
    FAILED = "failed"  # every provider failed; the user got a short error reply
    EXPIRED = "expired"  # pending too long before a restart
    SUPERSEDED = "superseded"  # this replica's claim lapsed; another replica answered instead


@dataclass
class Turn:
    inbound: Inbound
    sink: ReplySink | None = None
    recovered: bool = False
    ending: Ending | None = None
    error: ClankerError | None = None
    history: list[Message] = field(default_factory=list)
    response: AgentResponse | None = None
    reply: Message | None = None
    notice: str | None = None  # a short reply that is not a model answer (refusals, codes)
    draft_id: str | None = None  # platform message showing the streamed draft, if any
    claim: Claim | None = None  # this replica's claim on the message and its session's turn
    seq: int = 0  # the stored message's place in storage: turns of a session run in this order
    has_turn: bool = False  # the session's turn is held (taken when the message was stored)
    version: int | None = None  # the session's history version when the turn was taken
    stopped: bool = False  # a /stop that found an answer running and ended it (stopping.py)
    sent_tokens: int = 0  # our estimate of the context the model got (pipeline/history.py)

    @property
    def message(self) -> Message:
        return self.inbound.message

    def end(self, ending: Ending, **fields: Any) -> None:
        self.ending = ending
        for name, value in fields.items():
            setattr(self, name, value)

    def context_json(self, *, keep_client: bool = True) -> dict[str, Any]:
        """What recovery needs to finish this message after a restart (`keep_client=False`:
        without an API client's conversation, once the message is answered)."""
        i = self.inbound
        context: dict[str, Any] = {
            "platform_id": i.platform_id,
            "is_direct": i.is_direct,
            "addressed": i.addressed,
            "reply_target": i.reply_target,
            "thread_id": i.thread_id,
            "request_id": i.request_id,
        }
        if i.client is not None and keep_client:  # recovery answers with the client's context
            context["client"] = client_to_json(i.client)
        return context
