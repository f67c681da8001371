"""Anthropic's Messages API spoken directly over aiohttp: one answer, or an SSE stream.

Only text reaches the user: thinking, tool-use and other blocks are skipped by design.
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
from open_clanker.agent.mapping import JSON, to_anthropic_messages
from open_clanker.agent.select import ProviderChoice
from open_clanker.agent.sse import SSEEvent
from open_clanker.agent.wire_errors import error_from_stream, incomplete_stream
from open_clanker.core.errors import ProviderError
from open_clanker.core.types import AgentResponse, Usage

ANTHROPIC_VERSION = "2023-06-01"

# Anthropic's stop reasons in the vocabulary every provider's `finish_reason` uses.
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def finish_reason(stop_reason: object) -> str:
    if not isinstance(stop_reason, str) or not stop_reason:
        return "stop"
    return FINISH_REASONS.get(stop_reason, stop_reason)


def _int(value: object) -> int:
    return value if isinstance(value, int) else 0


def usage_from(raw: object, prompt: int = 0, completion: int = 0) -> tuple[int, int]:
    """(prompt, completion) tokens; cache reads and writes count as prompt tokens."""
    if not isinstance(raw, dict):
        return prompt, completion
    keys = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    if any(k in raw for k in keys):
        prompt = sum(_int(raw.get(k)) for k in keys)
    if "output_tokens" in raw:
        completion = _int(raw.get("output_tokens"))
    return prompt, completion


def make_usage(prompt: int, completion: int) -> Usage:
    return Usage(
        prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
    )


def request_body(model: str, request: ProviderRequest, *, stream: bool) -> JSON:
    body: JSON = {
        "model": model,
        "max_tokens": request.max_tokens,
        "messages": to_anthropic_messages(request.turns),
    }
    if request.system_prompt.strip():
        body["system"] = request.system_prompt
    if stream:
        body["stream"] = True
    return body


def request_headers(api_key: str) -> dict[str, str]:
    headers = {
        "anthropic-version": ANTHROPIC_VERSION,
        "content-type": "application/json",
        "accept": "application/json",
    }
    if api_key:
        headers["x-api-key"] = api_key
    return headers


def parse_message(data: dict[str, Any]) -> tuple[str, str, Usage]:
    """(text, finish_reason, usage) from a non-streamed Messages API answer."""
    blocks = data.get("content")
    text = "".join(
        b["text"]
        for b in (blocks if isinstance(blocks, list) else [])
        if isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str)
    )
    return text, finish_reason(data.get("stop_reason")), make_usage(*usage_from(data.get("usage")))


class AnthropicStream:
    """Folds the Messages API's stream events into text, usage and a stop reason."""

    def __init__(self, provider: str = "anthropic") -> None:
        self.provider = provider
        self.parts: list[str] = []
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.stop_reason: object = None
        self.done = False

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def feed(self, event: SSEEvent) -> str:
        """The text this event adds ('' for none). Raises `ProviderError` on an error event."""
        if event.event == "ping" or self.done:
            return ""
        data = parse_event_json(event, self.provider)
        kind = data.get("type", event.event)
        if kind == "content_block_delta":
            delta = data.get("delta")
            if isinstance(delta, dict) and delta.get("type") == "text_delta":
                piece = delta.get("text")
                if isinstance(piece, str):
                    self.parts.append(piece)
                    return piece
        elif kind == "message_start":
            message = data.get("message")
            raw = message.get("usage") if isinstance(message, dict) else None
            self.prompt_tokens, self.completion_tokens = usage_from(raw)
        elif kind == "message_delta":
            delta = data.get("delta")
            if isinstance(delta, dict) and delta.get("stop_reason"):
                self.stop_reason = delta["stop_reason"]
            self.prompt_tokens, self.completion_tokens = usage_from(
                data.get("usage"), self.prompt_tokens, self.completion_tokens
            )
        elif kind == "message_stop":
            self.done = True
        elif kind == "error":
            raise error_from_stream(self.provider, data.get("error"))
        return ""


Clock = Callable[[], float]


class AnthropicProvider:
    """Calls `POST {base_url}/v1/messages`. `http` is shared and owned by the caller."""

    name = "anthropic"

    def __init__(
        self,
        choice: ProviderChoice,
        http: aiohttp.ClientSession,
        *,
        timeout_s: float = 120.0,
        clock: Clock = time.perf_counter,
    ) -> None:
        self.model = choice.model
        self._url = f"{choice.base_url.rstrip('/')}/v1/messages"
        self._headers = request_headers(choice.api_key)
        self._http = http
        self._timeout_s = timeout_s
        self._clock = clock

    def __repr__(self) -> str:
        return f"AnthropicProvider(model={self.model!r}, url={self._url!r})"

    def _body(self, request: ProviderRequest, *, stream: bool) -> JSON:
        body = request_body(self.model, request, stream=stream)
        if not body["messages"]:
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
        if data.get("type") == "error":
            raise error_from_stream(self.name, data.get("error"))
        text, finish, usage = parse_message(data)
        return self._response(text, finish, usage, started)

    async def stream(self, request: ProviderRequest) -> AsyncIterator[StreamEvent]:
        started = self._clock()
        body = self._body(request, stream=True)
        state = AnthropicStream(self.name)
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
            if not state.done:  # trouble after message_stop loses nothing
                raise
        if not state.done:
            raise incomplete_stream(self.name)
        usage = make_usage(state.prompt_tokens, state.completion_tokens)
        yield StreamDone(
            self._response(state.text, finish_reason(state.stop_reason), usage, started)
        )
