"""The offline provider: a clearly labelled echo, so the product runs with no key at all."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from open_clanker.agent.base import ProviderRequest, StreamDone, StreamEvent, TextDelta
from open_clanker.core.types import AgentResponse, Role, Usage

ECHO_LABEL = "[echo: no model configured]"


def echo_text(request: ProviderRequest) -> str:
    last_user = next((t.text for t in reversed(request.turns) if t.role is Role.USER), "")
    return f"{ECHO_LABEL} You said: {last_user}"


def _words(text: str) -> list[str]:
    words = text.split(" ")
    return [w + " " for w in words[:-1]] + [words[-1]]


class EchoProvider:
    name = "echo"

    def __init__(self, model: str = "echo") -> None:
        self.model = model or "echo"

    def _response(self, request: ProviderRequest, text: str, started: float) -> AgentResponse:
        prompt = sum(len(t.text.split()) for t in request.turns)
        completion = len(text.split())
        return AgentResponse(
            content=text,
            model=self.model,
            provider=self.name,
            usage=Usage(
                prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
            ),
            latency_ms=(time.perf_counter() - started) * 1000,
        )

    async def complete(self, request: ProviderRequest) -> AgentResponse:
        started = time.perf_counter()
        return self._response(request, echo_text(request), started)

    async def stream(self, request: ProviderRequest) -> AsyncIterator[StreamEvent]:
        started = time.perf_counter()
        text = echo_text(request)
        for word in _words(text):
            yield TextDelta(word)
            # Let the consumers run between words, as a network read would: a streaming client
            # then sees each word as its own delta (deltas still waiting are merged).
            await asyncio.sleep(0)
        yield StreamDone(self._response(request, text, started))
