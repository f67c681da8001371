"""A loopback stand-in for Anthropic's Messages API, speaking its JSON and SSE wire formats.

Tests script replies (text, errors with Retry-After, a cut or stalled stream, a slow answer or
one held until the test releases it, thinking and tool-use blocks) and read back every Messages
request the double received. `GET /v1/models` answers the key check `doctor` makes.

With `context_limit` set it counts each request's prompt with its own tokenizer (characters / 3
per message and for the system prompt, plus 4 each, unlike the gateway's characters / 4),
reports that count as `usage.input_tokens`, records it in `prompt_counts`, and refuses a longer
prompt with Anthropic's 400 `invalid_request_error` "prompt is too long: N tokens > M maximum".
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
    error_type: str = "api_error"
    error_message: str = "Internal server error"
    retry_after: str | None = None
    delay_s: float = 0.0  # before anything is sent
    hold: asyncio.Event | None = None  # answer only once this is set (or the double closes)
    cut_after: int | None = None  # stream: drop the connection after this many text deltas
    end_after: int | None = None  # stream: end cleanly but without message_stop
    stall_after: int | None = None  # stream: fall silent after this many text deltas
    error_event: str | None = None  # stream: an `event: error` of this type after one delta
    extra_blocks: bool = False  # thinking and tool_use blocks around the text
    input_tokens: int = 12
    output_tokens: int = 5
    stop_reason: str = "end_turn"

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


IMAGE_TOKENS = 1_600  # an image near 1.15 megapixels, as Anthropic counts it


def _text_tokens(text: str) -> int:
    return math.ceil(len(text) / 3)


def count_prompt(body: dict[str, Any]) -> int:
    """The double's token count of a request's system prompt and messages."""
    system = body.get("system") or ""
    total = _text_tokens(system) + 4 if system else 0
    for message in body.get("messages", []):
        content = message.get("content") or ""
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        for block in blocks:
            is_text = block.get("type") == "text"
            total += _text_tokens(block.get("text", "")) if is_text else IMAGE_TOKENS
        total += 4
    return total


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


class AnthropicDouble:
    def __init__(self, api_key: str = "sk-ant-test") -> None:
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
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_get("/v1/models", self._models)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"
        return self.base_url

    async def close(self) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> AnthropicDouble:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), seconds)

    async def _held(self, hold: asyncio.Event) -> None:
        closing = asyncio.ensure_future(self._closing.wait())
        released = asyncio.ensure_future(hold.wait())
        await asyncio.wait({closing, released}, return_when=asyncio.FIRST_COMPLETED)
        closing.cancel()
        released.cancel()

    async def _models(self, request: web.Request) -> web.Response:
        """`GET /v1/models`: the cheap authenticated call `open-clanker doctor` makes."""
        if request.headers.get("x-api-key") != self.api_key:
            return self._error(401, "authentication_error", "invalid x-api-key", {})
        if request.headers.get("anthropic-version") != "2023-06-01":
            return self._error(400, "invalid_request_error", "anthropic-version missing", {})
        model = {
            "type": "model",
            "id": "claude-sonnet-4-5",
            "display_name": "Claude Sonnet 4.5",
            "created_at": "2025-09-29T00:00:00Z",
        }
        body = {"data": [model], "has_more": False, "first_id": model["id"], "last_id": model["id"]}
        return web.json_response(body)

    @staticmethod
    def _error(status: int, kind: str, message: str, headers: dict[str, str]) -> web.Response:
        body = {
            "type": "error",
            "error": {"type": kind, "message": message},
            "request_id": "req_011CdoubleXXXXXXXXXXXXXX",
        }
        return web.json_response(body, status=status, headers=headers)

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(Received(request.path, CIMultiDict(request.headers), body))
        reply = self.replies.popleft() if self.replies else self.default
        if reply.delay_s:
            await self._pause(reply.delay_s)
        if reply.hold is not None:
            await self._held(reply.hold)
        if request.headers.get("x-api-key") != self.api_key:
            return self._error(401, "authentication_error", "invalid x-api-key", {})
        if request.headers.get("anthropic-version") != "2023-06-01":
            return self._error(400, "invalid_request_error", "anthropic-version missing", {})
        if reply.status != 200:
            headers = {"retry-after": reply.retry_after} if reply.retry_after else {}
            return self._error(reply.status, reply.error_type, reply.error_message, headers)
        if self.context_limit is not None:
            tokens = count_prompt(body)
            self.prompt_counts.append(tokens)
            if tokens > self.context_limit:
                too_long = f"prompt is too long: {tokens} tokens > {self.context_limit} maximum"
                return self._error(400, "invalid_request_error", too_long, {})
            reply = dataclasses.replace(reply, input_tokens=tokens)
        if body.get("stream"):
            return await self._stream(request, reply, body)
        return web.json_response(self._message(reply, body))

    def _message(self, reply: Reply, body: dict[str, Any]) -> dict[str, Any]:
        content: list[dict[str, Any]] = [{"type": "text", "text": reply.text}]
        if reply.extra_blocks:
            content.insert(0, {"type": "thinking", "thinking": "Let me think.", "signature": "s"})
            content.append(
                {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"q": "x"}}
            )
        return {
            "id": "msg_double",
            "type": "message",
            "role": "assistant",
            "model": body.get("model", ""),
            "content": content,
            "stop_reason": reply.stop_reason,
            "stop_sequence": None,
            "usage": {"input_tokens": reply.input_tokens, "output_tokens": reply.output_tokens},
        }

    async def _stream(
        self, request: web.Request, reply: Reply, body: dict[str, Any]
    ) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        start = {
            "id": "msg_double",
            "type": "message",
            "role": "assistant",
            "model": body.get("model", ""),
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": reply.input_tokens, "output_tokens": 1},
        }
        await resp.write(_sse("message_start", {"type": "message_start", "message": start}))
        await resp.write(_sse("ping", {"type": "ping"}))
        index = 0
        if reply.extra_blocks:
            await self._thinking_block(resp, index)
            index += 1
        await resp.write(
            _sse(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {"type": "text", "text": ""},
                },
            )
        )
        for n, piece in enumerate(reply.pieces()):
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
            if n == 1 and reply.error_event:
                error = {"type": reply.error_event, "message": "Overloaded"}
                await resp.write(_sse("error", {"type": "error", "error": error}))
                await resp.write_eof()
                return resp
            delta = {"type": "text_delta", "text": piece}
            await resp.write(
                _sse(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": index, "delta": delta},
                )
            )
        await resp.write(_sse("content_block_stop", {"type": "content_block_stop", "index": index}))
        if reply.extra_blocks:
            await self._tool_block(resp, index + 1)
        await resp.write(
            _sse(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": reply.stop_reason, "stop_sequence": None},
                    "usage": {"output_tokens": reply.output_tokens},
                },
            )
        )
        await resp.write(_sse("message_stop", {"type": "message_stop"}))
        await resp.write_eof()
        return resp

    async def _thinking_block(self, resp: web.StreamResponse, index: int) -> None:
        block = {"type": "thinking", "thinking": "", "signature": ""}
        await resp.write(
            _sse(
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": block},
            )
        )
        for delta in (
            {"type": "thinking_delta", "thinking": 'Let me think about {"json": 1}.'},
            {"type": "signature_delta", "signature": "EqQBCgIYAhIM"},
        ):
            await resp.write(
                _sse(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": index, "delta": delta},
                )
            )
        await resp.write(_sse("content_block_stop", {"type": "content_block_stop", "index": index}))

    async def _tool_block(self, resp: web.StreamResponse, index: int) -> None:
        block = {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {}}
        await resp.write(
            _sse(
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": block},
            )
        )
        for part in ('{"q": ', '"x"}'):
            delta = {"type": "input_json_delta", "partial_json": part}
            await resp.write(
                _sse(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": index, "delta": delta},
                )
            )
        await resp.write(_sse("content_block_stop", {"type": "content_block_stop", "index": index}))
