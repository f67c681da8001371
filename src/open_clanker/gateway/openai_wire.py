"""OpenAI Chat Completions on the wire (SPEC §5.1): the request and response models, and our
`AgentResponse` as a `chat.completion` or a stream of `chat.completion.chunk` lines (pure)."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from open_clanker.core.errors import ClankerError
from open_clanker.core.types import AgentResponse, Usage
from open_clanker.gateway.openai_errors import describe, error_body

MODEL_ID = "open-clanker"


class _Lenient(BaseModel):
    # Other fields OpenAI clients send (logprobs, seed, name, metadata...) are ignored.
    model_config = ConfigDict(extra="ignore")


class TextPart(_Lenient):
    type: Literal["text"]
    text: str


class ImageURL(_Lenient):
    url: str = Field(min_length=1, description="A data: URL, or an http(s) URL the gateway reads.")


class ImagePart(_Lenient):
    type: Literal["image_url"]
    image_url: ImageURL


ContentPart = Annotated[TextPart | ImagePart, Field(discriminator="type")]


class ChatMessage(_Lenient):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ContentPart] | None = None


class StreamOptions(_Lenient):
    include_usage: bool = False


class ChatCompletionRequest(_Lenient):
    model: str = Field(examples=[MODEL_ID])
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    stop: str | list[str] | None = None
    user: str | None = Field(None, max_length=256)
    n: int | None = Field(None, ge=1)
    tools: list[Any] | None = None

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str = Field(examples=["invalid_request_error"])
    param: str | None = None
    code: str = Field(examples=["model_not_found"])


class OpenAIErrorBody(BaseModel):
    error: OpenAIErrorDetail


class CompletionMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str
    refusal: None = None


class CompletionChoice(BaseModel):
    index: int = 0
    message: CompletionMessage
    logprobs: None = None
    finish_reason: Literal["stop", "length"]


class CompletionUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    """The answer's shape, for the OpenAPI document (the route builds it as plain JSON)."""

    id: str = Field(examples=["chatcmpl-0f3c…"])
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str = Field(examples=[MODEL_ID])
    choices: list[CompletionChoice]
    usage: CompletionUsage


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


# -- our answer → OpenAI's ------------------------------------------------------------------


def finish_reason(ours: str) -> Literal["stop", "length"]:
    """SPEC §5.1 offers two: the answer ended, or it hit the token limit."""
    return "length" if ours in ("length", "max_tokens") else "stop"


def completion_id(message_id: str) -> str:
    return f"chatcmpl-{message_id}"


def usage_json(usage: Usage) -> dict[str, int]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


def completion(cid: str, created: int, response: AgentResponse) -> dict[str, Any]:
    return {
        "id": cid,
        "object": "chat.completion",
        "created": created,
        "model": MODEL_ID,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": response.content, "refusal": None},
                "logprobs": None,
                "finish_reason": finish_reason(response.finish_reason),
            }
        ],
        "usage": usage_json(response.usage),
    }


class ChunkWriter:
    """`chat.completion.chunk` SSE lines of one answer, all with the same id and time."""

    def __init__(self, cid: str, created: int, include_usage: bool) -> None:
        self._cid = cid
        self._created = created
        self._include_usage = include_usage

    def _line(self, choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> str:
        data: dict[str, Any] = {
            "id": self._cid,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": MODEL_ID,
            "choices": choices,
        }
        if self._include_usage:  # OpenAI sends null on every chunk but the usage one
            data["usage"] = usage
        return f"data: {json.dumps(data)}\n\n"

    def _choice(self, delta: dict[str, Any], finish: str | None = None) -> list[dict[str, Any]]:
        return [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]

    def role(self) -> str:
        return self._line(self._choice({"role": "assistant", "content": ""}))

    def content(self, text: str) -> str:
        return self._line(self._choice({"content": text}))

    def finish(self, finish: str, usage: dict[str, int]) -> list[str]:
        """The last chunk, the usage chunk when asked, and `[DONE]`."""
        lines = [self._line(self._choice({}, finish))]
        if self._include_usage:
            lines.append(self._line([], usage))
        lines.append("data: [DONE]\n\n")
        return lines

    @staticmethod
    def error(exc: ClankerError) -> str:
        """A stream that cannot go on ends with an error chunk (the SDKs raise on it)."""
        _status, kind, code = describe(exc)
        return f"data: {json.dumps(error_body(exc.message, kind, code))}\n\n"
