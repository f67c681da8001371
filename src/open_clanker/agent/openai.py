"""OpenAI Chat Completions spoken directly over aiohttp; also any compatible server (Ollama, vLLM).

Only text reaches the user: tool calls, reasoning and refusal parts are skipped by design.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp

from open_clanker.agent.base import ProviderRequest, StreamDone, StreamEvent, TextDelta
from open_clanker.agent.http import (
    parse_event_json,
    post_json,
    read_json,
    request_timeout,
    sse_events,
)
from open_clanker.agent.mapping import JSON, to_openai_messages
from open_clanker.agent.select import ProviderChoice
from open_clanker.agent.sse import SSEEvent
from open_clanker.agent.wire_errors import error_from_stream, incomplete_stream
from open_clanker.core.errors import ProviderError
from open_clanker.core.types import AgentResponse, Role, Usage


def _int(value: object) -> int:
    return value if isinstance(value, int) else 0


def make_usage(raw: object) -> Usage:
    if not isinstance(raw, dict):
        return Usage()
    prompt, completion = _int(raw.get("prompt_tokens")), _int(raw.get("completion_tokens"))
    total = _int(raw.get("total_tokens")) or prompt + completion
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=total)


def content_text(content: object) -> str:
    """Text of a message's `content`: a string, null (tool calls only), or a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            p["text"]
            for p in content
            if isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
        )
    return ""


def first_choice(data: dict[str, Any]) -> dict[str, Any]:
    choices = data.get("choices")
    if isinstance(choices, list):
        for choice in choices:
            if isinstance(choice, dict) and choice.get("index", 0) == 0:
                return choice
    return {}


def request_body(model: str, request: ProviderRequest, *, stream: bool) -> JSON:
    body: JSON = {
        "model": model,
        "messages": to_openai_messages(request.system_prompt, request.turns),
        "max_tokens": request.max_tokens,
        "stream": stream,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body


def request_headers(api_key: str) -> dict[str, str]:
    headers = {"content-type": "application/json", "accept": "application/json"}
    if api_key:  # a local server (Ollama) needs none
        headers["authorization"] = f"Bearer {api_key}"
    return headers


def parse_completion(data: dict[str, Any]) -> tuple[str, str, Usage]:
    """(text, finish_reason, usage) from a non-streamed chat completion."""
    choice = first_choice(data)
    message = choice.get("message")
    text = content_text(message.get("content")) if isinstance(message, dict) else ""
    finish = choice.get("finish_reason")
    return (
        text,
        finish if isinstance(finish, str) and finish else "stop",
        make_usage(data.get("usage")),
    )


class OpenAIStream:
    """Folds `chat.completion.chunk` events into text, usage and a finish reason."""

    def __init__(self, provider: str = "openai") -> None:
        self.provider = provider
        self.parts: list[str] = []
        self.usage = Usage()
        self.finish: str | None = None
        self.done = False  # `[DONE]` seen

    @property
    def text(self) -> str:
        return "".join(self.parts)

    @property
    def complete(self) -> bool:
        # Some compatible servers end without `[DONE]`; a finish reason means the answer is whole.
        return self.done or self.finish is not None

    def feed(self, event: SSEEvent) -> str:
        """The text this event adds ('' for none). Raises `ProviderError` on an error chunk."""
        if self.done:
            return ""
        if event.data.strip() == "[DONE]":
            self.done = True
            return ""
        data = parse_event_json(event, self.provider)
        if "error" in data:
            raise error_from_stream(self.provider, data["error"])
        if isinstance(data.get("usage"), dict):
            self.usage = make_usage(data["usage"])
        choice = first_choice(data)
        finish = choice.get("finish_reason")
        if isinstance(finish, str) and finish:
            self.finish = finish
        delta = choice.get("delta")
        piece = content_text(delta.get("content")) if isinstance(delta, dict) else ""
        if piece:
            self.parts.append(piece)
        return piece


Clock = Callable[[], float]


class OpenAIProvider:
    """Calls `POST {base_url}/chat/completions`. `http` is shared and owned by the caller."""

    name = "openai"

    def __init__(
        self,
        choice: ProviderChoice,
        http: aiohttp.ClientSession,
        *,
        timeout_s: float = 120.0,
        clock: Clock = time.perf_counter,
    ) -> None:
        self.model = choice.model
        self._url = f"{choice.base_url.rstrip('/')}/chat/completions"
        self._headers = request_headers(choice.api_key)
        self._http = http
        self._timeout_s = timeout_s
        self._clock = clock

    def __repr__(self) -> str:
        return f"OpenAIProvider(model={self.model!r}, url={self._url!r})"

    def _body(self, request: ProviderRequest, *, stream: bool) -> JSON:
        body = request_body(self.model, request, stream=stream)
        if not any(m["role"] == Role.USER.value for m in body["messages"]):
            raise ProviderError("There is no user message to answer.", self.name)
        return body

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
        body = self._body(request, stream=False)
        async with post_json(
            self._http,
            self.name,
            self._url,
            headers=self._headers,
            body=body,
            client_timeout=request_timeout(self._timeout_s, streaming=False),
        ) as resp:
            data = await read_json(resp, self.name)
        if "error" in data:
            raise error_from_stream(self.name, data["error"])
        text, finish, usage = parse_completion(data)
        return self._response(text, finish, usage, started)

    async def stream(self, request: ProviderRequest) -> AsyncIterator[StreamEvent]:
        started = self._clock()
        body = self._body(request, stream=True)
        state = OpenAIStream(self.name)
        try:
            async with post_json(
                self._http,
                self.name,
                self._url,
                headers={**self._headers, "accept": "text/event-stream"},
                body=body,
                client_timeout=request_timeout(self._timeout_s, streaming=True),
            ) as resp:
                async for event in sse_events(resp):
                    piece = state.feed(event)
                    if piece:
                        yield TextDelta(piece)
        except ProviderError:
            if not state.complete:  # trouble after the finish reason loses nothing
                raise
        if not state.complete:
            raise incomplete_stream(self.name)
        yield StreamDone(self._response(state.text, state.finish or "stop", state.usage, started))
