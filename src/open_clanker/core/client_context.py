"""What an API client sends besides its message: its own context and sampling (SPEC §5.1).

The OpenAI-compatible API is stateless by default: the client's turns and system prompt stand in
for the stored history for that one turn. The context rides in the message's context JSON, so
recovery after a crash answers with the same context.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from open_clanker.core.types import Attachment, ChatTurn, Role


@dataclass(frozen=True, slots=True)
class Sampling:
    """Sampling a client asked for; None or () leaves the provider's default."""

    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    user: str | None = None  # the client's end-user id, passed on for the vendor's abuse checks


@dataclass(frozen=True, slots=True)
class ClientContext:
    """`history` None: the session's stored history is the context (`X-Session-Key`); else
    these turns, oldest first, come before the message. `attachments` are the message's images
    already read (data URLs); the stored message keeps only references to them."""

    system_prompt: str | None = None  # None: the configured one
    history: tuple[ChatTurn, ...] | None = None
    attachments: tuple[Attachment, ...] = ()
    max_tokens: int | None = None  # capped by [agent] max_tokens where it is used
    sampling: Sampling = field(default_factory=Sampling)


def model_turns(client: ClientContext, stored: Sequence[ChatTurn]) -> list[ChatTurn]:
    """The turns the model sees: `stored` ends with the message itself (the pipeline's history);
    the client's turns replace what came before it, and its read images replace its references."""
    if not stored:
        return list(client.history or ())
    newest = ChatTurn(stored[-1].role, stored[-1].text, client.attachments)
    before = list(stored[:-1]) if client.history is None else list(client.history)
    return [*before, newest]


def capped_max_tokens(client: ClientContext | None, configured: int) -> int:
    if client is None or client.max_tokens is None:
        return configured
    return max(1, min(client.max_tokens, configured))


def _turn_json(turn: ChatTurn) -> dict[str, Any]:
    return {
        "role": turn.role.value,
        "text": turn.text,
        "attachments": [a.model_dump(mode="json") for a in turn.attachments],
    }


def _turn_from(raw: dict[str, Any]) -> ChatTurn:
    attachments = tuple(Attachment.model_validate(a) for a in raw.get("attachments", ()))
    return ChatTurn(Role(raw["role"]), str(raw["text"]), attachments)


def client_to_json(client: ClientContext) -> dict[str, Any]:
    s = client.sampling
    return {
        "system_prompt": client.system_prompt,
        "history": None if client.history is None else [_turn_json(t) for t in client.history],
        "attachments": [a.model_dump(mode="json") for a in client.attachments],
        "max_tokens": client.max_tokens,
        "sampling": {
            "temperature": s.temperature,
            "top_p": s.top_p,
            "stop": list(s.stop),
            "user": s.user,
        },
    }


def client_from_json(raw: object) -> ClientContext | None:
    """The inverse of `client_to_json`; None for a message that had no client context."""
    if not isinstance(raw, dict):
        return None
    history = raw.get("history")
    s = raw.get("sampling") or {}
    return ClientContext(
        system_prompt=raw.get("system_prompt"),
        history=None if history is None else tuple(_turn_from(t) for t in history),
        attachments=tuple(Attachment.model_validate(a) for a in raw.get("attachments", ())),
        max_tokens=raw.get("max_tokens"),
        sampling=Sampling(
            temperature=s.get("temperature"),
            top_p=s.get("top_p"),
            stop=tuple(s.get("stop", ())),
            user=s.get("user"),
        ),
    )
