"""Retries and fallbacks around providers, so callers see one reliable provider."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

from open_clanker.agent.base import (
    Provider,
    ProviderRequest,
    StreamDone,
    StreamEvent,
    StreamReset,
    TextDelta,
)
from open_clanker.core.errors import ProviderError
from open_clanker.core.types import AgentResponse

Sleep = Callable[[float], Awaitable[None]]

MAX_RETRY_AFTER_S = 30.0


def backoff_delay(attempt: int, retry_after: float | None, base: float = 0.5) -> float:
    """Jittered exponential backoff; a server's Retry-After wins, capped."""
    if retry_after is not None:
        return min(max(retry_after, 0.0), MAX_RETRY_AFTER_S)
    return float(min(base * (2**attempt), 8.0) * (0.5 + random.random() / 2))


class ProviderChain:
    def __init__(
        self, providers: Sequence[Provider], max_retries: int, sleep: Sleep = asyncio.sleep
    ) -> None:
        if not providers:
            raise ValueError("a provider chain needs at least one provider")
        self.providers = list(providers)
        self.max_retries = max_retries
        self._sleep = sleep

    @property
    def primary(self) -> Provider:
        return self.providers[0]

    async def complete(self, request: ProviderRequest) -> AgentResponse:
        last: ProviderError | None = None
        for provider in self.providers:
            for attempt in range(self.max_retries + 1):
                try:
                    return await provider.complete(request)
                except ProviderError as exc:
                    last = exc
                    if not exc.retryable or attempt == self.max_retries:
                        break
                    await self._sleep(backoff_delay(attempt, exc.retry_after))
        assert last is not None
        raise last

    async def stream(self, request: ProviderRequest) -> AsyncIterator[StreamEvent]:
        """Deltas across retries and fallbacks; never repeats text the caller already has.

        When a retry's text starts with what was already sent, only the rest is yielded;
        otherwise a `StreamReset` comes first and the new text follows from the start.
        """
        shown = ""
        last: ProviderError | None = None
        for provider in self.providers:
            for attempt in range(self.max_retries + 1):
                received = ""
                try:
                    async for event in provider.stream(request):
                        if isinstance(event, TextDelta):
                            received += event.text
                            if len(received) <= len(shown) and shown.startswith(received):
                                continue  # still replaying what the caller already has
                            if received.startswith(shown):
                                new = received[len(shown) :]
                            else:
                                yield StreamReset()
                                new = received
                            shown = received
                            if new:
                                yield TextDelta(new)
                        elif isinstance(event, StreamDone):
                            if event.response.content != shown:
                                # The final text is authoritative (e.g. a short retry answer).
                                if not event.response.content.startswith(shown):
                                    yield StreamReset()
                                    shown = ""
                                rest = event.response.content[len(shown) :]
                                if rest:
                                    yield TextDelta(rest)
                            yield event
                            return
                except ProviderError as exc:
                    last = exc
                    if not exc.retryable or attempt == self.max_retries:
                        break
                    await self._sleep(backoff_delay(attempt, exc.retry_after))
        assert last is not None
        raise last
