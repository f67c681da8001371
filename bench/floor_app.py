"""The floor: a bare Starlette app on uvicorn that forwards a chat to the model double.

Run: `.venv/bin/python -m bench.floor_app PORT DOUBLE_URL [fastapi]` (DOUBLE_URL like
`http://127.0.0.1:9000/v1`). `POST /api/v1/chat` takes the gateway's body
`{"text", "session"?, "stream"?}`, sends one OpenAI request to the double through one shared
aiohttp ClientSession and returns the double's JSON, or relays its SSE stream.
`POST /v1/chat/completions` does the same for an OpenAI request (the system prompt put first,
the model name replaced). No auth, no storage, no history: the least any gateway must do. Same
uvicorn settings as the gateway (uvloop + httptools, no access log). `GET /health` answers
`ok`, for the launch and idle-memory rows.

With `fastapi`, the *stack floor*: the same routes on FastAPI, each body a pydantic model
(validated as the gateway's are) -- the least a gateway written with the chosen web framework
does, so the rows show what the framework costs before anything of ours.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import uvicorn
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

SYSTEM = "You are a helpful AI assistant."
HEADERS = {"authorization": "Bearer bench-key", "content-type": "application/json"}


class Forwarder:
    """One shared aiohttp session; one OpenAI request to the double per chat."""

    def __init__(self, double_url: str) -> None:
        self.url = double_url.rstrip("/") + "/chat/completions"
        self._session: aiohttp.ClientSession | None = None

    def http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200))
        return self._session

    async def forward(self, stream: bool, messages: list[dict[str, Any]]) -> Response:
        payload: dict[str, object] = {
            "model": "gpt-bench",
            "max_tokens": 1024,
            "messages": [{"role": "system", "content": SYSTEM}, *messages],
        }
        if not stream:
            async with self.http().post(self.url, data=json.dumps(payload), headers=HEADERS) as r:
                data = await r.read()
            return Response(data, media_type="application/json")
        payload["stream"] = True
        payload["stream_options"] = {"include_usage": True}

        async def relay() -> AsyncIterator[bytes]:
            async with self.http().post(self.url, data=json.dumps(payload), headers=HEADERS) as r:
                async for chunk in r.content.iter_any():
                    yield chunk

        return StreamingResponse(relay(), media_type="text/event-stream")


async def health(_request: Request) -> Response:
    return Response("ok", media_type="text/plain")


def make_app(double_url: str) -> Starlette:
    fwd = Forwarder(double_url)

    async def chat(request: Request) -> Response:
        body = await request.json()
        return await fwd.forward(
            bool(body.get("stream")), [{"role": "user", "content": body["text"]}]
        )

    async def completions(request: Request) -> Response:
        body = await request.json()
        return await fwd.forward(bool(body.get("stream")), body["messages"])

    return Starlette(
        routes=[
            Route("/health", health, methods=["GET"]),
            Route("/api/v1/chat", chat, methods=["POST"]),
            Route("/v1/chat/completions", completions, methods=["POST"]),
        ]
    )


class ChatIn(BaseModel):
    text: str
    session: str | None = None
    stream: bool = False


class CompletionsIn(BaseModel):
    model: str
    messages: list[dict[str, Any]]
    stream: bool = False


def make_fastapi_app(double_url: str) -> Any:
    from fastapi import FastAPI

    fwd = Forwarder(double_url)
    app = FastAPI(docs_url=None, redoc_url=None)
    app.add_api_route("/health", health, methods=["GET"])

    @app.post("/api/v1/chat")
    async def chat(body: ChatIn) -> Response:
        return await fwd.forward(body.stream, [{"role": "user", "content": body.text}])

    @app.post("/v1/chat/completions")
    async def completions(body: CompletionsIn) -> Response:
        return await fwd.forward(body.stream, body.messages)

    return app


if __name__ == "__main__":
    port, double_url = int(sys.argv[1]), sys.argv[2]
    fastapi = len(sys.argv) > 3 and sys.argv[3] == "fastapi"
    uvicorn.run(
        make_fastapi_app(double_url) if fastapi else make_app(double_url),
        host="127.0.0.1",
        port=port,
        log_config=None,
        access_log=False,
        server_header=False,
        lifespan="off",
    )
