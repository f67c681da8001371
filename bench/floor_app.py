"""The floor: a bare Starlette app on uvicorn that forwards a chat to the model double.

Run: `.venv/bin/python -m bench.floor_app PORT DOUBLE_URL` (DOUBLE_URL like
`http://127.0.0.1:9000/v1`). `POST /api/v1/chat` takes the gateway's body
`{"text", "session"?, "stream"?}`, sends one OpenAI request to the double through one shared
aiohttp ClientSession and returns the double's JSON, or relays its SSE stream.
`POST /v1/chat/completions` does the same for an OpenAI request (the system prompt put first,
the model name replaced). No auth, no storage, no history: the least any gateway must do. Same
uvicorn settings as the gateway (uvloop + httptools, no access log).
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator

import aiohttp
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

SYSTEM = "You are a helpful AI assistant."


def make_app(double_url: str) -> Starlette:
    url = double_url.rstrip("/") + "/chat/completions"
    state: dict[str, aiohttp.ClientSession] = {}

    def http() -> aiohttp.ClientSession:
        if "s" not in state:
            state["s"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200))
        return state["s"]

    async def chat(request: Request) -> Response:
        body = await request.json()
        return await forward(bool(body.get("stream")), [{"role": "user", "content": body["text"]}])

    async def completions(request: Request) -> Response:
        body = await request.json()
        return await forward(bool(body.get("stream")), body["messages"])

    async def forward(stream: bool, messages: list[dict[str, object]]) -> Response:
        payload: dict[str, object] = {
            "model": "gpt-bench",
            "max_tokens": 1024,
            "messages": [{"role": "system", "content": SYSTEM}, *messages],
        }
        headers = {"authorization": "Bearer bench-key", "content-type": "application/json"}
        if not stream:
            async with http().post(url, data=json.dumps(payload), headers=headers) as r:
                data = await r.read()
            return Response(data, media_type="application/json")
        payload["stream"] = True
        payload["stream_options"] = {"include_usage": True}

        async def relay() -> AsyncIterator[bytes]:
            async with http().post(url, data=json.dumps(payload), headers=headers) as r:
                async for chunk in r.content.iter_any():
                    yield chunk

        return StreamingResponse(relay(), media_type="text/event-stream")

    return Starlette(
        routes=[
            Route("/api/v1/chat", chat, methods=["POST"]),
            Route("/v1/chat/completions", completions, methods=["POST"]),
        ]
    )


if __name__ == "__main__":
    port, double_url = int(sys.argv[1]), sys.argv[2]
    uvicorn.run(
        make_app(double_url),
        host="127.0.0.1",
        port=port,
        log_config=None,
        access_log=False,
        server_header=False,
        lifespan="off",
    )
