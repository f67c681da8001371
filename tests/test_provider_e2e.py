"""Real providers through the whole gateway: API → pipeline → aiohttp → loopback vendor double."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from open_clanker.config.model import Config
from tests.doubles import anthropic_double, openai_double
from tests.harness import RunningGateway, running_gateway

pytestmark = pytest.mark.usefixtures("data_dir")


async def chat(
    http: aiohttp.ClientSession, gw: RunningGateway, text: str, **extra: Any
) -> tuple[int, Any]:
    body = {"text": text, "session": "e2e", **extra}
    async with http.post(f"{gw.base_url}/api/v1/chat", json=body, headers=gw.auth) as r:
        if r.headers["Content-Type"].startswith("text/event-stream"):
            return r.status, (await r.read()).decode()
        return r.status, await r.json()


def sse_events(raw: str) -> list[tuple[str, Any]]:
    out = []
    for block in raw.strip().split("\n\n"):
        head, data = block.split("\n", 1)
        out.append((head.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return out


async def test_openai_compatible_server_answers_with_history(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENCLAW_OPENAI_API_KEY", "sk-test")
    async with openai_double.OpenAIDouble() as double:
        double.script(
            openai_double.Reply(text="First answer."), openai_double.Reply(text="Second answer.")
        )
        config = Config.model_validate(
            {
                "agent": {
                    "provider": "openai",
                    "base_url": double.base_url,
                    "model": "gpt-test",
                    "stream": False,
                }
            }
        )
        async with running_gateway(config) as gw, aiohttp.ClientSession() as http:
            _, first = await chat(http, gw, "question one")
            assert first["reply"]["content"] == "First answer."
            assert first["reply"]["provider"] == "openai"
            assert first["reply"]["usage"]["total_tokens"] > 0
            assert first["reply"]["latency_ms"] > 0
            _, second = await chat(http, gw, "question two")
            assert second["reply"]["content"] == "Second answer."
            async with http.get(f"{gw.base_url}/api/v1/status", headers=gw.auth) as r:
                status = await r.json()
            assert status["provider"]["name"] == "openai"
            assert status["provider"]["model"] == "gpt-test"
    sent = double.requests[1].body["messages"]
    assert [(m["role"], m["content"]) for m in sent] == [
        ("system", "You are a helpful AI assistant."),
        ("user", "question one"),
        ("assistant", "First answer."),
        ("user", "question two"),
    ]
    assert double.requests[1].headers["Authorization"] == "Bearer sk-test"


async def test_anthropic_answers_with_history(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENCLAW_ANTHROPIC_API_KEY", "sk-ant-test")
    async with anthropic_double.AnthropicDouble() as double:
        double.script(
            anthropic_double.Reply(text="Bonjour."), anthropic_double.Reply(text="Encore.")
        )
        config = Config.model_validate(
            {
                "agent": {
                    "provider": "auto",
                    "base_url": double.base_url,
                    "system_prompt": "Be brief.",
                }
            }
        )
        async with running_gateway(config) as gw, aiohttp.ClientSession() as http:
            _, first = await chat(http, gw, "hello")
            assert first["reply"]["content"] == "Bonjour."
            assert first["reply"]["provider"] == "anthropic"
            _, raw = await chat(http, gw, "again", stream=True)  # streamed this time
            events = sse_events(raw)
            assert events[-1][0] == "done"
            assert "".join(d["text"] for k, d in events if k == "delta") == "Encore."
    body = double.requests[1].body
    assert body["system"] == "Be brief."
    assert [(m["role"], m["content"]) for m in body["messages"]] == [
        ("user", "hello"),
        ("assistant", "Bonjour."),
        ("user", "again"),
    ]
    assert double.requests[1].headers["x-api-key"] == "sk-ant-test"
    assert "anthropic-dangerous-direct-browser-access" not in double.requests[1].headers


async def test_failing_primary_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENCLAW_OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("OPENCLAW_ANTHROPIC_API_KEY", "sk-ant-test")
    async with (
        openai_double.OpenAIDouble() as primary,
        anthropic_double.AnthropicDouble() as backup,
    ):
        primary.default = openai_double.Reply(status=500)
        backup.script(anthropic_double.Reply(text="From the fallback."))
        config = Config.model_validate(
            {
                "agent": {
                    "provider": "openai",
                    "base_url": primary.base_url,
                    "max_retries": 1,
                    "stream": False,
                    "fallbacks": [{"provider": "anthropic", "base_url": backup.base_url}],
                }
            }
        )
        async with running_gateway(config) as gw, aiohttp.ClientSession() as http:
            status, body = await chat(http, gw, "help me")
    assert status == 200
    assert body["reply"]["content"] == "From the fallback."
    assert body["reply"]["provider"] == "anthropic"
    assert len(primary.requests) == 2  # first attempt + one retry, then the fallback


async def test_all_failing_is_502_naming_the_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENCLAW_OPENAI_API_KEY", "wrong-key")
    async with openai_double.OpenAIDouble() as double:
        config = Config.model_validate(
            {"agent": {"provider": "openai", "base_url": double.base_url, "max_retries": 2}}
        )
        async with running_gateway(config) as gw, aiohttp.ClientSession() as http:
            status, body = await chat(http, gw, "hi")
            assert status == 502
            assert body["error"]["code"] == "provider_error"
            assert "openai" in body["error"]["message"]
            assert "wrong-key" not in json.dumps(body)
            _, raw = await chat(http, gw, "hi again", stream=True)
            assert sse_events(raw)[-1][0] == "error"
            async with http.get(
                f"{gw.base_url}/api/v1/sessions/e2e/messages", headers=gw.auth
            ) as r:
                stored = (await r.json())["messages"]
    assert len(double.requests) == 2  # 401 is never retried (one request per message)
    assert stored[0]["text"] == "hi"  # the question is kept even though the model failed


async def test_cut_stream_never_repeats_text(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENCLAW_OPENAI_API_KEY", "sk-test")
    async with openai_double.OpenAIDouble() as double:
        text = "one two three four five six"
        double.script(openai_double.Reply(text=text, cut_after=3), openai_double.Reply(text=text))
        config = Config.model_validate(
            {"agent": {"provider": "openai", "base_url": double.base_url}}
        )
        async with running_gateway(config) as gw, aiohttp.ClientSession() as http:
            _, raw = await chat(http, gw, "count", stream=True)
            async with http.get(
                f"{gw.base_url}/api/v1/sessions/e2e/messages", headers=gw.auth
            ) as r:
                stored = (await r.json())["messages"]
    events = sse_events(raw)
    assert [k for k, _ in events].count("reset") == 0
    assert "".join(d["text"] for k, d in events if k == "delta") == text
    assert events[-1][1]["reply"]["content"] == text
    assert [m["text"] for m in stored] == ["count", text]  # stored once, whole
