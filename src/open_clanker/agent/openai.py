"""OpenAI Chat Completions spoken directly over aiohttp; also any compatible server (Ollama, vLLM).

Only text reaches the user: tool calls, reasoning and refusal parts are skipped by design.
"""

from __future__ import annotations

from typing import Any

from open_clanker.agent.base import ProviderRequest
from open_clanker.agent.http import (
    parse_event_json,
)
from open_clanker.agent.mapping import JSON, to_openai_messages
from open_clanker.agent.sse import SSEEvent
from open_clanker.agent.wire import WireProvider
from open_clanker.agent.wire_errors import error_from_stream
from open_clanker.core.errors import ProviderError
from open_clanker.core.types import Role, Usage


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
    s = request.sampling
    if s.temperature is not None:
        body["temperature"] = s.temperature
    if s.top_p is not None:
        body["top_p"] = s.top_p
    if s.stop:
        body["stop"] = list(s.stop)
    if s.user:
        body["user"] = s.user
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

    @property
    def finished(self) -> bool:
        return self.complete

    def result(self) -> tuple[str, str, Usage]:
        return self.text, self.finish or "stop", self.usage

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


class OpenAIProvider(WireProvider):
    """Calls `POST {base_url}/chat/completions`."""

    name = "openai"
    endpoint = "/chat/completions"
    request_headers = staticmethod(request_headers)

    def body(self, request: ProviderRequest, *, stream: bool) -> JSON:
        body = request_body(self.model, request, stream=stream)
        if not any(m["role"] == Role.USER.value for m in body["messages"]):
            raise ProviderError("There is no user message to answer.", self.name)
        return body

    def parse(self, data: dict[str, Any]) -> tuple[str, str, Usage]:
        if "error" in data:
            raise error_from_stream(self.name, data["error"])
        return parse_completion(data)

    def new_stream(self) -> OpenAIStream:
        return OpenAIStream(self.name)
