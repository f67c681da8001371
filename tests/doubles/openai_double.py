"""A loopback stand-in for OpenAI Chat Completions (and compatible servers such as Ollama).

Speaks the JSON answer, the `data: {...}` chunk stream with a usage chunk and `data: [DONE]`,
and OpenAI's error body. Tests script replies and read back every request received.

With `context_limit` set it counts each request's prompt with its own tokenizer (characters / 3
per message plus 4, unlike the gateway's estimate of characters / 4), reports that count as
`usage.prompt_tokens`, records it in `prompt_counts`, and refuses a longer prompt with OpenAI's
`context_length_exceeded` error, as the API does.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import math
from collections import deque
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from multidict import CIMultiDict


@dataclass(frozen=True)
class Reply:
    text: str = "Hello from the double."
    deltas: tuple[str, ...] | None = None  # how a stream splits `text`; default: by word
    status: int = 200
    error_type: str = "server_error"
    error_message: str = "The server had an error while processing your request."
    retry_after: str | None = None
    delay_s: float = 0.0
    hold: asyncio.Event | None = None  # answer only once this is set (or the double closes)
    delta_delay_s: float = 0.0  # stream: a pause before each text delta (a slow model)
    cut_after: int | None = None  # stream: drop the connection after this many text deltas
    end_after: int | None = None  # stream: end cleanly, without finish_reason or [DONE]
    no_done: bool = False  # stream: everything but the final `data: [DONE]`
    stall_after: int | None = None
    error_chunk: str | None = None  # stream: a `data: {"error": ...}` chunk after one delta
    extra_parts: bool = False  # reasoning and tool-call deltas / fields around the text
    prompt_tokens: int = 9
    completion_tokens: int = 4
    finish_reason: str = "stop"

    def pieces(self) -> list[str]:
        if self.deltas is not None:
            return list(self.deltas)
        words = self.text.split(" ")
        return [w + " " for w in words[:-1]] + [words[-1]]


@dataclass(frozen=True)
class Received:
    path: str
    headers: CIMultiDict[str]
    body: dict[str, Any]


IMAGE_TOKENS = 765  # a high-detail 1024 × 1024 image, as OpenAI counts it


def count_prompt(body: dict[str, Any]) -> int:
    """The double's token count of a request's messages (its own tokenizer)."""
    total = 0
    for message in body.get("messages", []):
        content = message.get("content") or ""
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
        for part in parts:
            if part.get("type") == "text":
                total += math.ceil(len(part.get("text", "")) / 3)
            else:
                total += IMAGE_TOKENS
        total += 4
    return total


def _chunk(model: str, delta: dict[str, Any] | None, finish: str | None = None) -> bytes:
    data: dict[str, Any] = {
        "id": "chatcmpl-double",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": model,
        "system_fingerprint": None,
        "choices": []
        if delta is None
        else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    return f"data: {json.dumps(data)}\n\n".encode()


class OpenAIDouble:
    """`api_key=""` makes it keyless, like a local Ollama."""

    def __init__(self, api_key: str = "sk-test") -> None:
        self.api_key = api_key
        self.requests: list[Received] = []
        self.replies: deque[Reply] = deque()
        self.default = Reply()
        self.context_limit: int | None = None
        self.prompt_counts: list[int] = []  # with context_limit: each request's prompt tokens
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    def script(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._completions)
        app.router.add_get("/v1/models", self._models)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}/v1"
        return self.base_url

    async def close(self) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> OpenAIDouble:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), seconds)

    @staticmethod
    def _error(
        status: int,
        kind: str,
        message: str,
        headers: dict[str, str],
        *,
        param: str | None = None,
        code: str | None = None,
    ) -> web.Response:
        body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
        return web.json_response(body, status=status, headers=headers)

    def _too_long(self, tokens: int) -> web.Response:
        message = (
            f"This model's maximum context length is {self.context_limit} tokens. However, "
            f"your messages resulted in {tokens} tokens. Please reduce the length of the "
            "messages."
        )
        return self._error(
            400,
            "invalid_request_error",
            message,
            {},
            param="messages",
            code="context_length_exceeded",
        )

    async def _held(self, hold: asyncio.Event) -> None:
        closing = asyncio.ensure_future(self._closing.wait())
        released = asyncio.ensure_future(hold.wait())
        await asyncio.wait({closing, released}, return_when=asyncio.FIRST_COMPLETED)
        closing.cancel()
        released.cancel()

    async def _models(self, request: web.Request) -> web.Response:
        # Unauthenticated, as Ollama's is: the auto-selection probe calls it without a key.
        model = {"id": "llama3.2", "object": "model", "created": 1_700_000_000, "owned_by": "x"}
        return web.json_response({"object": "list", "data": [model]})

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(Received(request.path, CIMultiDict(request.headers), body))
        reply = self.replies.popleft() if self.replies else self.default
        if reply.delay_s:
            await self._pause(reply.delay_s)
        if reply.hold is not None:
            await self._held(reply.hold)
        if self.api_key and request.headers.get("authorization") != f"Bearer {self.api_key}":
            return self._error(401, "invalid_request_error", "Incorrect API key provided.", {})
        if reply.status != 200:
            headers = {"retry-after": reply.retry_after} if reply.retry_after else {}
            return self._error(reply.status, reply.error_type, reply.error_message, headers)
        if self.context_limit is not None:
            tokens = count_prompt(body)
            self.prompt_counts.append(tokens)
            if tokens > self.context_limit:
                return self._too_long(tokens)
            reply = dataclasses.replace(reply, prompt_tokens=tokens)
        if body.get("stream"):
            return await self._stream(request, reply, body)
        return web.json_response(self._completion(reply, body))

    def _usage(self, reply: Reply) -> dict[str, int]:
        return {
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": reply.completion_tokens,
            "total_tokens": reply.prompt_tokens + reply.completion_tokens,
        }

    def _completion(self, reply: Reply, body: dict[str, Any]) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": reply.text, "refusal": None}
        if reply.extra_parts:
            message["reasoning_content"] = 'Thinking about {"json": 1}.'
            message["tool_calls"] = [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "lookup", "arguments": '{"q": "x"}'},
                }
            ]
        return {
            "id": "chatcmpl-double",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": body.get("model", ""),
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": reply.finish_reason,
                }
            ],
            "usage": self._usage(reply),
        }

    async def _stream(
        self, request: web.Request, reply: Reply, body: dict[str, Any]
    ) -> web.StreamResponse:
        model = body.get("model", "")
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(_chunk(model, {"role": "assistant", "content": "", "refusal": None}))
        if reply.extra_parts:
            await resp.write(_chunk(model, {"reasoning_content": 'Hmm {"a": 1}'}))
            call = {
                "index": 0,
                "id": "call_1",
                "type": "function",
                "function": {"name": "lookup", "arguments": '{"q":'},
            }
            await resp.write(_chunk(model, {"content": None, "tool_calls": [call]}))
        for n, piece in enumerate(reply.pieces()):
            if reply.delta_delay_s:
                await self._pause(reply.delta_delay_s)
            if n == reply.cut_after:
                assert request.transport is not None
                request.transport.close()
                return resp
            if n == reply.end_after:
                await resp.write_eof()
                return resp
            if n == reply.stall_after:
                await self._pause(3600)
                return resp
            if n == 1 and reply.error_chunk:
                error = {"message": "The server had an error.", "type": reply.error_chunk}
                await resp.write(f"data: {json.dumps({'error': error})}\n\n".encode())
                await resp.write_eof()
                return resp
            await resp.write(_chunk(model, {"content": piece}))
        await resp.write(_chunk(model, {}, reply.finish_reason))
        if (body.get("stream_options") or {}).get("include_usage"):
            usage_chunk = json.loads(_chunk(model, None)[len("data: ") :])
            usage_chunk["usage"] = self._usage(reply)
            await resp.write(f"data: {json.dumps(usage_chunk)}\n\n".encode())
        if not reply.no_done:
            await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp
