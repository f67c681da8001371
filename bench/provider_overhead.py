"""Time our provider code adds per reply, against a bare aiohttp call to the same loopback double.

Run: `.venv/bin/python -m bench.provider_overhead [N]`. Prints one markdown table row per case.
Direct and provider calls alternate, so drift in the machine affects both the same way.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from tests.doubles.anthropic_double import AnthropicDouble
from tests.doubles.anthropic_double import Reply as AReply
from tests.doubles.openai_double import OpenAIDouble
from tests.doubles.openai_double import Reply as OReply

from open_clanker.agent.anthropic import AnthropicProvider
from open_clanker.agent.base import Provider, ProviderRequest, StreamDone
from open_clanker.agent.openai import OpenAIProvider
from open_clanker.agent.select import ProviderChoice
from open_clanker.core.types import ChatTurn, Role

REQUEST = ProviderRequest(
    "You are a helpful AI assistant.",
    (
        ChatTurn(Role.USER, "Hi, I am Ada."),
        ChatTurn(Role.ASSISTANT, "Hello Ada! How can I help?"),
        ChatTurn(Role.USER, "Tell me a short fact about octopuses."),
    ),
    256,
)
TEXT = "An octopus has three hearts and blue blood, and each arm can taste what it touches."

Call = Callable[[], Awaitable[str]]


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def measure(direct: Call, ours: Call, n: int) -> tuple[list[float], list[float]]:
    for _ in range(100):  # warm the pool and the code paths
        await direct()
        await ours()
    d_times: list[float] = []
    o_times: list[float] = []
    for i in range(n):
        pair = [(direct, d_times), (ours, o_times)]
        for call, times in pair if i % 2 == 0 else reversed(pair):
            started = time.perf_counter()
            text = await call()
            times.append((time.perf_counter() - started) * 1000)
            assert text == TEXT, text
    return d_times, o_times


def row(case: str, d: list[float], o: list[float]) -> str:
    dp50, dp99, op50, op99 = (
        statistics.median(d),
        percentile(d, 0.99),
        statistics.median(o),
        percentile(o, 0.99),
    )
    return (
        f"| {case} | {dp50:.3f} | {dp99:.3f} | {op50:.3f} | {op99:.3f} "
        f"| {op50 - dp50:+.3f} | {op99 - dp99:+.3f} |"
    )


async def main(n: int) -> None:
    async with (
        AnthropicDouble() as ad,
        OpenAIDouble() as od,
        aiohttp.ClientSession() as http,
    ):
        ad.default = AReply(text=TEXT)
        od.default = OReply(text=TEXT)
        claude = AnthropicProvider(
            ProviderChoice("anthropic", "claude-bench", ad.base_url, ad.api_key, "bench"), http
        )
        gpt = OpenAIProvider(
            ProviderChoice("openai", "gpt-bench", od.base_url, od.api_key, "bench"), http
        )
        a_url, a_headers = (
            f"{ad.base_url}/v1/messages",
            {
                "x-api-key": ad.api_key,
                "anthropic-version": "2023-06-01",
                "content-type": "application/json",
            },
        )
        o_url, o_headers = (
            f"{od.base_url}/chat/completions",
            {
                "authorization": f"Bearer {od.api_key}",
                "content-type": "application/json",
            },
        )
        a_body: dict[str, Any] = {
            "model": "claude-bench",
            "max_tokens": 256,
            "system": REQUEST.system_prompt,
            "messages": [{"role": t.role.value, "content": t.text} for t in REQUEST.turns],
        }
        o_body: dict[str, Any] = {
            "model": "gpt-bench",
            "max_tokens": 256,
            "messages": [{"role": "system", "content": REQUEST.system_prompt}]
            + [{"role": t.role.value, "content": t.text} for t in REQUEST.turns],
        }

        async def a_direct() -> str:
            async with http.post(a_url, data=json.dumps(a_body), headers=a_headers) as r:
                return str((await r.json())["content"][0]["text"])

        async def o_direct() -> str:
            async with http.post(o_url, data=json.dumps(o_body), headers=o_headers) as r:
                return str((await r.json())["choices"][0]["message"]["content"])

        async def a_direct_stream() -> str:
            parts: list[str] = []
            body = {**a_body, "stream": True}
            async with http.post(a_url, data=json.dumps(body), headers=a_headers) as r:
                async for line in r.content:
                    if line.startswith(b"data: "):
                        event = json.loads(line[6:])
                        if event["type"] == "content_block_delta":
                            parts.append(event["delta"]["text"])
            return "".join(parts)

        async def o_direct_stream() -> str:
            parts: list[str] = []
            body = {**o_body, "stream": True, "stream_options": {"include_usage": True}}
            async with http.post(o_url, data=json.dumps(body), headers=o_headers) as r:
                async for line in r.content:
                    if line.startswith(b"data: {"):
                        choices = json.loads(line[6:])["choices"]
                        if choices and choices[0]["delta"].get("content"):
                            parts.append(choices[0]["delta"]["content"])
            return "".join(parts)

        def complete(p: Provider) -> Call:
            async def call() -> str:
                return (await p.complete(REQUEST)).content

            return call

        def stream(p: Provider) -> Call:
            async def call() -> str:
                async for event in p.stream(REQUEST):
                    if isinstance(event, StreamDone):
                        return event.response.content
                raise AssertionError("no StreamDone")

            return call

        print(f"N={n} sequential replies per column, loopback double, times in ms\n")
        print("| case | direct p50 | direct p99 | ours p50 | ours p99 | added p50 | added p99 |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        cases: list[tuple[str, Call, Call]] = [
            ("anthropic complete", a_direct, complete(claude)),
            ("anthropic stream", a_direct_stream, stream(claude)),
            ("openai complete", o_direct, complete(gpt)),
            ("openai stream", o_direct_stream, stream(gpt)),
        ]
        for name, direct, ours in cases:
            d, o = await measure(direct, ours, n)
            print(row(name, d, o), flush=True)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000))
