"""A zero-latency OpenAI Chat Completions double for the benchmarks (run as its own process).

Run: `.venv/bin/python -m bench.model_double [PORT]` (0 picks a free port). Prints
`PORT <n>` on stdout once listening. Answers `POST …/chat/completions` with a fixed short reply:
JSON, or with `"stream": true` an SSE stream of `data: {...}` chunks (choices[0].delta.content),
a usage chunk and `data: [DONE]`. Every body is encoded once at start.
"""

from __future__ import annotations

import asyncio
import json
import sys

from aiohttp import web

REPLY = "An octopus has three hearts and blue blood."
MODEL = "gpt-bench"
USAGE = {"prompt_tokens": 42, "completion_tokens": 10, "total_tokens": 52}


def _json_body() -> bytes:
    return json.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": REPLY},
                    "finish_reason": "stop",
                }
            ],
            "usage": USAGE,
        }
    ).encode()


def _chunk(choices: list[dict[str, object]], usage: object = None) -> bytes:
    body: dict[str, object] = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": MODEL,
        "choices": choices,
    }
    if usage is not None:
        body["usage"] = usage
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def _stream_body() -> bytes:
    words = REPLY.split(" ")
    parts = [" ".join(words[i : i + 2]) + " " for i in range(0, len(words), 2)]
    parts[-1] = parts[-1].rstrip()
    assert "".join(parts) == REPLY
    out = [_chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}}])]
    out += [_chunk([{"index": 0, "delta": {"content": p}, "finish_reason": None}]) for p in parts]
    out.append(_chunk([{"index": 0, "delta": {}, "finish_reason": "stop"}]))
    out.append(_chunk([], USAGE))
    out.append(b"data: [DONE]\n\n")
    return b"".join(out)


JSON_BODY = _json_body()
STREAM_BODY = _stream_body()


async def completions(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    if body.get("stream"):
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(STREAM_BODY)
        await resp.write_eof()
        return resp
    return web.Response(body=JSON_BODY, content_type="application/json")


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", completions)
    app.router.add_post("/chat/completions", completions)
    return app


async def main(port: int) -> None:
    runner = web.AppRunner(make_app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=2048)
    await site.start()
    server = site._server
    assert server is not None
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)  # type: ignore[attr-defined]
    await asyncio.Event().wait()


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 0))
