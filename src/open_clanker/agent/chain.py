"""Retries and fallbacks around providers, so callers see one reliable provider."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager

import structlog

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

log = structlog.get_logger("open_clanker.agent")

MAX_RETRY_AFTER_S = 30.0
MAX_BACKOFF_S = 8.0


def backoff_delay(
    attempt: int,
    retry_after: float | None,
    base: float = 0.5,
    jitter: Callable[[], float] = random.random,
) -> float:
    """Jittered exponential backoff; a server's Retry-After wins, capped."""
    if retry_after is not None:
        return min(max(retry_after, 0.0), MAX_RETRY_AFTER_S)
    return float(min(base * (2**attempt), MAX_BACKOFF_S) * (0.5 + jitter() / 2))


def catch_up(shown: str, received: str) -> tuple[list[StreamEvent], str]:
    """Events that take a caller who has `shown` to `received`, and what it has afterwards.

    While a retry replays text the caller already has, nothing is sent; when it extends that
    text, only the rest; when it departs from it, a `StreamReset` and the new text.
    """
    if len(received) <= len(shown) and shown.startswith(received):
        return [], shown
    if received.startswith(shown):
        return [TextDelta(received[len(shown) :])], received
    return [StreamReset(), TextDelta(received)], received


def settle(shown: str, final: str) -> list[StreamEvent]:
    """Events that make the caller's text equal the final answer, which is authoritative."""
    if final == shown:
        return []
    if final.startswith(shown):
        return [TextDelta(final[len(shown) :])]
    return [StreamReset(), TextDelta(final)] if final else [StreamReset()]


@asynccontextmanager
async def _closing(events: AsyncIterator[StreamEvent]) -> AsyncIterator[AsyncIterator[StreamEvent]]:
    try:
        yield events
    finally:
        aclose = getattr(events, "aclose", None)  # async generators have it; iterators may not
        if aclose is not None:
            await aclose()


def _unfinished(provider: Provider) -> ProviderError:
    return ProviderError(
        f"{provider.name} ended its answer without finishing it", provider.name, retryable=True
    )


class ProviderChain:
    """The primary provider, then each fallback in order; each tried `1 + max_retries` times.

    A context overflow ends the chain at once: retrying or falling back would send the same
    too-long request, so it goes back to the caller, which trims the context and asks again."""

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
                    if exc.context_overflow is not None:
                        raise  # the same request would fail again: the caller sends less
                    last = exc
                    delay = self._after_failure(provider, exc, attempt)
                    if delay is None:
                        break  # an auth or request error will not get better: next provider
                    await self._sleep(delay)
        assert last is not None  # every provider was tried at least once
        raise last

    async def stream(self, request: ProviderRequest) -> AsyncIterator[StreamEvent]:
        """Deltas across retries and fallbacks; never repeats text the caller already has."""
        shown = ""
        last: ProviderError | None = None
        for provider in self.providers:
            for attempt in range(self.max_retries + 1):
                received = ""
                try:
                    # aclosing: the provider's HTTP response is released as soon as we stop.
                    async with _closing(provider.stream(request)) as events:
                        async for event in events:
                            if isinstance(event, StreamDone):
                                for item in settle(shown, event.response.content):
                                    yield item
                                yield event
                                return
                            if isinstance(event, TextDelta):
                                received += event.text
                                out, shown = catch_up(shown, received)
                                for item in out:
                                    yield item
                    raise _unfinished(provider)
                except ProviderError as exc:
                    if exc.context_overflow is not None:
                        raise  # the same request would fail again: the caller sends less
                    last = exc
                    delay = self._after_failure(provider, exc, attempt)
                    if delay is None:
                        break
                    await self._sleep(delay)
        assert last is not None  # every provider was tried at least once
        raise last

    def _after_failure(self, provider: Provider, exc: ProviderError, attempt: int) -> float | None:
        """The pause before trying `provider` again, or None to move on; one log line each."""
        if not exc.retryable or attempt == self.max_retries:
            log.warning(
                "provider_gave_up", provider=provider.name, attempts=attempt + 1, error=exc.message
            )
            return None
        delay = backoff_delay(attempt, exc.retry_after)
        log.warning(
            "provider_retry",
            provider=provider.name,
            attempt=attempt + 1,
            delay_s=round(delay, 2),
            error=exc.message,
        )
        return delay
