"""What every model provider offers: one answer, or a stream of text deltas ending in one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from open_clanker.core.client_context import Sampling
from open_clanker.core.types import AgentResponse, ChatTurn


@dataclass(frozen=True, slots=True)
class ProviderRequest:
    system_prompt: str
    turns: tuple[ChatTurn, ...]
    max_tokens: int
    sampling: Sampling = field(default_factory=Sampling)  # an API client's temperature, stop...


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class StreamReset:
    """Drop the partial text shown so far: a retry after partial output starts over."""


@dataclass(frozen=True, slots=True)
class StreamDone:
    response: AgentResponse


StreamEvent = TextDelta | StreamReset | StreamDone


@runtime_checkable
class Provider(Protocol):
    """A model behind a wire API. Raises `ProviderError` (never a vendor or HTTP exception)."""

    name: str
    model: str

    async def complete(self, request: ProviderRequest) -> AgentResponse: ...

    def stream(self, request: ProviderRequest) -> AsyncIterator[StreamEvent]:
        """Yields `TextDelta`s, then exactly one `StreamDone` with the whole text."""
        ...
