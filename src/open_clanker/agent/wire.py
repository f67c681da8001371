"""What the two wire providers share: one POST, a JSON answer or an SSE stream folded by a
vendor-specific state object, and the `AgentResponse` built from it."""

from __future__ import annotations

import abc
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, ClassVar, Protocol

import aiohttp

from open_clanker.agent.base import ProviderRequest, StreamDone, StreamEvent, TextDelta
from open_clanker.agent.http import post_json, read_json, request_timeout, sse_events
from open_clanker.agent.mapping import JSON
from open_clanker.agent.select import ProviderChoice
from open_clanker.agent.sse import SSEEvent
from open_clanker.agent.wire_errors import incomplete_stream
from open_clanker.core import tracing
from open_clanker.core.errors import ProviderError
from open_clanker.core.types import AgentResponse, Usage

Clock = Callable[[], float]


class StreamState(Protocol):
    """A vendor's stream folded into text, a finish reason and usage."""

    def feed(self, event: SSEEvent) -> str:
        """The text this event adds ('' for none); raises `ProviderError` on an error event."""
        ...

    @property
    def finished(self) -> bool:
        """The answer is whole (trouble after this point loses nothing)."""
        ...

    def result(self) -> tuple[str, str, Usage]: ...


class WireProvider(abc.ABC):
    """Base of `AnthropicProvider` and `OpenAIProvider`. `http` is shared, owned by the caller."""

    name: str
    endpoint: ClassVar[str]  # appended to the configured base URL

    def __init__(
        self,
        choice: ProviderChoice,
        http: aiohttp.ClientSession,
        *,
        timeout_s: float = 120.0,
        clock: Clock = time.perf_counter,
    ) -> None:
        self.model = choice.model
        self._url = f"{choice.base_url.rstrip('/')}{self.endpoint}"
        self._headers = self.request_headers(choice.api_key)
        self._http = http
        self._timeout_s = timeout_s
        self._clock = clock

    def __repr__(self) -> str:  # never the key: it lives only in the headers
        return f"{type(self).__name__}(model={self.model!r}, url={self._url!r})"

    # -- what each vendor defines -----------------------------------------------------------

    @staticmethod
    @abc.abstractmethod
    def request_headers(api_key: str) -> dict[str, str]: ...

    @abc.abstractmethod
    def body(self, request: ProviderRequest, *, stream: bool) -> JSON: ...

    @abc.abstractmethod
    def parse(self, data: dict[str, Any]) -> tuple[str, str, Usage]:
        """(text, finish_reason, usage) of a whole JSON answer."""

    @abc.abstractmethod
    def new_stream(self) -> StreamState: ...

    # -- shared -----------------------------------------------------------------------------

    def _response(self, text: str, finish: str, usage: Usage, started: float) -> AgentResponse:
        return AgentResponse(
            content=text,
            model=self.model,
            provider=self.name,
            finish_reason=finish,
            usage=usage,
            latency_ms=(self._clock() - started) * 1000,
        )

    async def complete(self, request: ProviderRequest) -> AgentResponse:
        started = self._clock()
        async with post_json(
            self._http,
            self.name,
            self._url,
            headers={**self._headers, **tracing.outgoing_headers()},
            body=self.body(request, stream=False),
            client_timeout=request_timeout(self._timeout_s, streaming=False),
        ) as resp:
            data = await read_json(resp, self.name)
        return self._response(*self.parse(data), started)

    async def stream(self, request: ProviderRequest) -> AsyncIterator[StreamEvent]:
        started = self._clock()
        body = self.body(request, stream=True)
        state = self.new_stream()
        try:
            async with post_json(
                self._http,
                self.name,
                self._url,
                headers={
                    **self._headers,
                    "accept": "text/event-stream",
                    **tracing.outgoing_headers(),
                },
                body=body,
                client_timeout=request_timeout(self._timeout_s, streaming=True),
            ) as resp:
                async for event in sse_events(resp):
                    piece = state.feed(event)
                    if piece:
                        yield TextDelta(piece)
        except ProviderError:
            if not state.finished:  # trouble after the answer was whole loses nothing
                raise
        if not state.finished:
            raise incomplete_stream(self.name)
        yield StreamDone(self._response(*state.result(), started))
