"""Anthropic's Messages API spoken directly over aiohttp: one answer, or an SSE stream.

Only text reaches the user: thinking, tool-use and other blocks are skipped by design.
"""

from __future__ import annotations

from typing import Any

from open_clanker.agent.base import ProviderRequest
from open_clanker.agent.http import (
    parse_event_json,
)
from open_clanker.agent.mapping import JSON, to_anthropic_messages
from open_clanker.agent.sse import SSEEvent
from open_clanker.agent.wire import WireProvider
from open_clanker.agent.wire_errors import error_from_stream
from open_clanker.core.errors import ProviderError
from open_clanker.core.types import Usage

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
    s = request.sampling
    # Anthropic's temperature runs 0-1 (OpenAI's 0-2), and its newer models refuse temperature
    # and top_p together: temperature wins.
    if s.temperature is not None:
        body["temperature"] = min(s.temperature, 1.0)
    elif s.top_p is not None:
        body["top_p"] = s.top_p
    stops = [x for x in s.stop if x.strip()]  # Anthropic refuses whitespace-only sequences
    if stops:
        body["stop_sequences"] = stops
    if s.user:
        body["metadata"] = {"user_id": s.user}
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

    @property
    def finished(self) -> bool:
        return self.done

    def result(self) -> tuple[str, str, Usage]:
        usage = make_usage(self.prompt_tokens, self.completion_tokens)
        return self.text, finish_reason(self.stop_reason), usage

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


class AnthropicProvider(WireProvider):
    """Calls `POST {base_url}/v1/messages`."""

    name = "anthropic"
    endpoint = "/v1/messages"
    request_headers = staticmethod(request_headers)

    def body(self, request: ProviderRequest, *, stream: bool) -> JSON:
        body = request_body(self.model, request, stream=stream)
        if not body["messages"]:
            raise ProviderError("There is no user message to answer.", self.name)
        return body

    def parse(self, data: dict[str, Any]) -> tuple[str, str, Usage]:
        if data.get("type") == "error":
            raise error_from_stream(self.name, data.get("error"))
        return parse_message(data)

    def new_stream(self) -> AnthropicStream:
        return AnthropicStream(self.name)
