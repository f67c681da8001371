"""The OpenAI-compatible API (SPEC §5.1) through the real server, driven by the real `openai`
SDK, with a loopback OpenAI double as the upstream model."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

import aiohttp
import openai
import pytest

from open_clanker.config.model import Config
from tests.doubles import anthropic_double
from tests.doubles.openai_double import Reply
from tests.harness import running_gateway
from tests.openai_kit import CONFIGURED_PROMPT, Rig, rig, roles_and_texts, sdk

pytestmark = pytest.mark.usefixtures("data_dir")


async def history(r: Rig, session: str) -> list[dict[str, Any]]:
    url = f"{r.gw.base_url}/api/v1/sessions/{quote(session, safe='')}/messages"
    async with aiohttp.ClientSession() as http, http.get(url, headers=r.gw.auth) as resp:
        assert resp.status == 200, await resp.text()
        return list((await resp.json())["messages"])


async def test_models_list_names_the_one_model(monkeypatch: pytest.MonkeyPatch) -> None:
    async with rig(monkeypatch) as r:
        page = await r.client.models.list()
    assert [(m.id, m.object, m.owned_by) for m in page.data] == [
        ("open-clanker", "model", "open-clanker")
    ]
    assert page.data[0].created > 1_600_000_000


async def test_a_completion_is_stored_as_an_openai_exchange(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with rig(monkeypatch) as r:
        r.double.script(Reply(text="Paris.", prompt_tokens=11, completion_tokens=2))
        raw = await r.client.chat.completions.with_raw_response.create(
            model="open-clanker", messages=[{"role": "user", "content": "Capital of France?"}]
        )
        done = raw.parse()
        session = raw.headers["x-session-key"]
        stored = await history(r, session)
    assert done.object == "chat.completion"
    assert done.id.startswith("chatcmpl-")
    assert done.model == "open-clanker"
    assert [(c.index, c.message.role, c.message.content) for c in done.choices] == [
        (0, "assistant", "Paris.")
    ]
    assert done.choices[0].finish_reason == "stop"
    assert done.usage is not None
    assert (done.usage.prompt_tokens, done.usage.completion_tokens) == (11, 2)
    assert done.usage.total_tokens == 13
    assert session.startswith("openai:")
    assert [(m["role"], m["text"], m["channel_type"]) for m in stored] == [
        ("user", "Capital of France?", "openai"),
        ("assistant", "Paris.", "openai"),
    ]
    assert done.id == f"chatcmpl-{stored[0]['id']}"  # the answer names the stored message


async def test_a_stream_with_usage(monkeypatch: pytest.MonkeyPatch) -> None:
    async with rig(monkeypatch) as r:
        r.double.script(Reply(text="One two three.", prompt_tokens=7, completion_tokens=3))
        stream = await r.client.chat.completions.create(
            model="open-clanker",
            messages=[{"role": "user", "content": "Count."}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [c async for c in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "One two three."
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 10
    assert {c.id for c in chunks} == {chunks[0].id}
    assert all(c.usage is None for c in chunks[:-1])


async def test_stateless_context_reaches_the_model_exactly_as_sent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    messages: list[Any] = [
        {"role": "system", "content": "You are terse."},
        {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
        {"role": "user", "content": "Hi, I am Ann."},
        {"role": "assistant", "content": "Bonjour Ann."},
        {"role": "user", "content": [{"type": "text", "text": "What is my name?"}]},
    ]
    async with rig(monkeypatch) as r:
        r.double.script(Reply(text="Ann."))
        raw = await r.client.chat.completions.with_raw_response.create(
            model="open-clanker", messages=messages
        )
        stored = await history(r, raw.headers["x-session-key"])
        # No system message: the configured system prompt is used.
        await r.client.chat.completions.create(
            model="open-clanker", messages=[{"role": "user", "content": "Alone."}]
        )
    assert roles_and_texts(r.sent(0)) == [
        ("system", "You are terse.\n\nAnswer in French."),
        ("user", "Hi, I am Ann."),
        ("assistant", "Bonjour Ann."),
        ("user", "What is my name?"),
    ]
    assert roles_and_texts(r.sent(1)) == [("system", CONFIGURED_PROMPT), ("user", "Alone.")]
    # Only the newest message and the reply are stored: the context was the client's.
    assert [m["text"] for m in stored] == ["What is my name?", "Ann."]


async def test_x_session_key_keeps_the_session_in_the_gateway(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with rig(monkeypatch) as r:
        r.double.script(Reply(text="Hello Ann."), Reply(text="You are Ann."))
        headers = {"X-Session-Key": "work"}
        first = await r.client.chat.completions.with_raw_response.create(
            model="open-clanker",
            messages=[{"role": "user", "content": "I am Ann."}],
            extra_headers=headers,
        )
        second = await r.client.chat.completions.create(
            model="open-clanker",
            messages=[{"role": "user", "content": "Who am I?"}],
            extra_headers={"X-Session-Key": "openai:work"},  # the full key names it too
        )
        stored = await history(r, "openai:work")
    assert first.headers["x-session-key"] == "openai:work"
    assert second.choices[0].message.content == "You are Ann."
    assert roles_and_texts(r.sent(1)) == [
        ("system", CONFIGURED_PROMPT),
        ("user", "I am Ann."),
        ("assistant", "Hello Ann."),
        ("user", "Who am I?"),
    ]
    assert [(m["role"], m["text"]) for m in stored] == [
        ("user", "I am Ann."),
        ("assistant", "Hello Ann."),
        ("user", "Who am I?"),
        ("assistant", "You are Ann."),
    ]


async def test_sampling_fields_reach_the_provider_and_max_tokens_is_capped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with rig(monkeypatch, agent={"max_tokens": 300}) as r:
        r.double.script(Reply(text="Cut", finish_reason="length"))
        cut = await r.client.chat.completions.create(
            model="open-clanker",
            messages=[{"role": "user", "content": "Go on."}],
            max_tokens=5000,
            temperature=0.3,
            top_p=0.9,
            stop=["END"],
            user="user-42",
            seed=7,  # another field OpenAI clients send: ignored
        )
        await r.client.chat.completions.create(
            model="open-clanker",
            messages=[{"role": "user", "content": "Short."}],
            max_completion_tokens=50,
            stop="STOP",
        )
    assert cut.choices[0].finish_reason == "length"
    first, second = r.sent(0), r.sent(1)
    assert first["max_tokens"] == 300  # capped by [agent] max_tokens
    assert (first["temperature"], first["top_p"], first["stop"], first["user"]) == (
        0.3,
        0.9,
        ["END"],
        "user-42",
    )
    assert "seed" not in first
    assert second["max_tokens"] == 50
    assert second["stop"] == ["STOP"]
    assert "temperature" not in second and "user" not in second


async def test_an_idempotent_repeat_costs_no_second_model_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with rig(monkeypatch) as r:
        r.double.script(Reply(text="Only once."), Reply(text="Twice?"))
        ask: dict[str, Any] = {
            "model": "open-clanker",
            "messages": [{"role": "user", "content": "Once."}],
            "extra_headers": {"Idempotency-Key": "k-1"},
        }
        first = await r.client.chat.completions.create(**ask)
        again = await r.client.chat.completions.create(**ask)
        streamed = await r.client.chat.completions.create(**ask, stream=True)
        replayed = [c async for c in streamed]
        with pytest.raises(openai.BadRequestError) as reused:
            await r.client.chat.completions.create(
                **{**ask, "messages": [{"role": "user", "content": "Something else."}]}
            )
        # Keys are scoped per route: the same key on /api/v1/chat is another request.
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{r.gw.base_url}/api/v1/chat",
                json={"text": "Other."},
                headers={**r.gw.auth, "Idempotency-Key": "k-1"},
            ) as resp,
        ):
            api = await resp.json()
    assert again.id == first.id
    assert again.choices[0].message.content == "Only once."
    assert "".join(c.choices[0].delta.content or "" for c in replayed) == "Only once."
    assert {c.id for c in replayed} == {first.id}
    assert reused.value.code == "idempotency_key_reused"
    assert api["reply"]["content"] == "Twice?"
    assert len(r.double.requests) == 2


async def test_openai_api_false_removes_both_routes() -> None:
    config = Config.model_validate({"server": {"openai_api": False}})
    async with running_gateway(config) as gw, sdk(gw) as client:
        with pytest.raises(openai.NotFoundError):
            await client.models.list()
        with pytest.raises(openai.NotFoundError):
            await client.chat.completions.create(
                model="open-clanker", messages=[{"role": "user", "content": "hi"}]
            )
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{gw.base_url}/api/v1/chat", json={"text": "hi"}, headers=gw.auth) as r,
        ):
            assert r.status == 200  # the rest of the API is unchanged


async def test_commands_answer_from_the_gateway(monkeypatch: pytest.MonkeyPatch) -> None:
    async with rig(monkeypatch) as r:
        done = await r.client.chat.completions.create(
            model="open-clanker",
            messages=[{"role": "user", "content": "/help"}],
            extra_headers={"X-Session-Key": "cmd"},
        )
    assert "/new" in (done.choices[0].message.content or "")
    assert r.double.requests == []


async def test_an_anthropic_chain_answers_the_openai_api(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENCLAW_ANTHROPIC_API_KEY", "sk-ant-test")
    async with anthropic_double.AnthropicDouble() as double:
        double.script(anthropic_double.Reply(text="Bonjour.", stop_reason="max_tokens"))
        config = Config.model_validate(
            {"agent": {"provider": "anthropic", "base_url": double.base_url, "max_retries": 0}}
        )
        async with running_gateway(config) as gw, sdk(gw) as client:
            stream = await client.chat.completions.create(
                model="open-clanker",
                messages=[
                    {"role": "developer", "content": "Speak French."},
                    {"role": "user", "content": "Hello"},
                    {"role": "assistant", "content": "Salut."},
                    {"role": "user", "content": "Again"},
                ],
                temperature=1.7,
                stop="FIN",
                stream=True,
            )
            chunks = [c async for c in stream]
    body = double.requests[-1].body
    assert body["system"] == "Speak French."
    assert [(m["role"], m["content"]) for m in body["messages"]] == [
        ("user", "Hello"),
        ("assistant", "Salut."),
        ("user", "Again"),
    ]
    assert (body["temperature"], body["stop_sequences"]) == (1.0, ["FIN"])
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Bonjour."
    assert chunks[-1].choices[0].finish_reason == "length"


async def test_a_concurrent_repeat_waits_for_the_first_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    release = asyncio.Event()
    async with rig(monkeypatch) as r:
        r.double.script(Reply(text="Held answer.", hold=release))
        ask: dict[str, Any] = {
            "model": "open-clanker",
            "messages": [{"role": "user", "content": "Slow one."}],
            "extra_headers": {"Idempotency-Key": "k-concurrent"},
        }
        first = asyncio.create_task(r.client.chat.completions.create(**ask))
        while not r.double.requests:
            await asyncio.sleep(0.01)
        repeat = asyncio.create_task(r.client.chat.completions.create(**ask, stream=True))
        await asyncio.sleep(0.1)  # let the repeat arrive while the first is held (if it is
        # later, it finds the answer stored: one model call either way)
        release.set()
        done, streamed = await first, await repeat
        chunks = [c async for c in streamed]
    assert done.choices[0].message.content == "Held answer."
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Held answer."
    assert {c.id for c in chunks} == {done.id}
    assert len(r.double.requests) == 1
