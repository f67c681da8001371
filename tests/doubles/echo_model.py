"""An OpenAI-compatible model double that answers "answer to: <the last user message>".

For replica tests and `make bench-replicas`: each answer names the message it answers, so a
cross-answered reply is visible, and every request's messages are recorded, so the history a
turn saw can be checked. `delay_s` makes it a slow model; a user text containing `[slow N]`
takes N seconds. JSON answers and the `data: {...}` chunk stream with `[DONE]`.
Run alone: `python -m tests.doubles.echo_model [PORT] [DELAY_S]` prints `PORT <n>`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sys
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

SLOW = re.compile(r"\[slow (\d+(?:\.\d+)?)\]")


def answer_to(text: str) -> str:
    return f"answer to: {text}"


@dataclass
class EchoModel:
    delay_s: float = 0.0
    requests: list[list[dict[str, Any]]] = field(default_factory=list)
    base_url: str = ""
    _runner: web.AppRunner | None = None
    _closing: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self, port: int = 0) -> str:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._completions)
        app.router.add_get("/v1/models", self._models)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port, backlog=1024)
        await site.start()
        self.base_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/v1"
        return self.base_url

    async def stop(self) -> None:
        self._closing.set()  # slow answers end now, so shutting down never waits on them
        if self._runner is not None:
            await self._runner.cleanup()

    def asked(self, text: str) -> list[list[dict[str, Any]]]:
        """Every request whose last message was `text` (one per model call for it)."""
        return [r for r in self.requests if r and r[-1].get("content") == text]

    async def _models(self, _request: web.Request) -> web.Response:
        model = {"id": "echo", "object": "model", "created": 1_700_000_000, "owned_by": "test"}
        return web.json_response({"object": "list", "data": [model]})

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        messages = [m for m in body.get("messages", []) if m.get("role") != "system"]
        self.requests.append(messages)
        last = next((m for m in reversed(messages) if m.get("role") == "user"), {})
        text = last.get("content", "")
        if isinstance(text, list):  # content parts
            text = " ".join(p.get("text", "") for p in text if isinstance(p, dict))
        slow = SLOW.search(text)
        delay = float(slow.group(1)) if slow else self.delay_s
        if delay:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), delay)
        reply = answer_to(text)
        usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
        if not body.get("stream"):
            return web.json_response(
                {
                    "id": "chatcmpl-echo",
                    "object": "chat.completion",
                    "created": 1_700_000_000,
                    "model": body.get("model", "echo"),
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": reply},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": usage,
                }
            )
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for delta in ({"role": "assistant", "content": ""}, {"content": reply}):
            await resp.write(_chunk([{"index": 0, "delta": delta, "finish_reason": None}]))
        await resp.write(_chunk([{"index": 0, "delta": {}, "finish_reason": "stop"}]))
        await resp.write(_chunk([], usage))
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp


def _chunk(choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> bytes:
    body: dict[str, Any] = {
        "id": "chatcmpl-echo",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "echo",
        "choices": choices,
    }
    if usage is not None:
        body["usage"] = usage
    return b"data: " + json.dumps(body).encode() + b"\n\n"


async def _main(port: int, delay_s: float) -> None:
    model = EchoModel(delay_s=delay_s)
    url = await model.start(port)
    print(f"PORT {url.rsplit(':', 1)[1].split('/')[0]}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    args = sys.argv[1:]
    asyncio.run(_main(int(args[0]) if args else 0, float(args[1]) if len(args) > 1 else 0.0))
