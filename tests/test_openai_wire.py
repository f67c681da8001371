"""The exact wire format of /v1/chat/completions, read with a plain HTTP client (aiohttp): body
keys, headers, chunk order and `[DONE]`; and recovery answering with the client's context."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from open_clanker.config.model import Config
from open_clanker.config.paths import default_storage_url
from open_clanker.gateway.openai_turns import conversation, openai_inbound
from open_clanker.gateway.openai_wire import ChatCompletionRequest
from open_clanker.pipeline.context import Turn
from open_clanker.storage.store import Store
from tests.doubles.openai_double import Reply
from tests.harness import running_gateway, settled
from tests.openai_kit import Rig, rig, roles_and_texts

pytestmark = pytest.mark.usefixtures("data_dir")


async def post(r: Rig, body: dict[str, Any]) -> tuple[int, Any, str]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{r.v1}/chat/completions", json=body, headers=r.gw.auth) as resp,
    ):
        return resp.status, resp.headers, (await resp.read()).decode()


def sse_data(raw: str) -> list[Any]:
    """Each event is exactly one `data: …` line; `[DONE]` stays a string."""
    assert raw.endswith("\n\n")
    out: list[Any] = []
    for block in raw.removesuffix("\n\n").split("\n\n"):
        assert block.startswith("data: ") and "\n" not in block, block
        data = block.removeprefix("data: ")
        out.append(data if data == "[DONE]" else json.loads(data))
    return out


def ask(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "open-clanker", "messages": [{"role": "user", "content": text}], **extra}


async def test_a_completion_has_openai_keys_and_headers(monkeypatch: pytest.MonkeyPatch) -> None:
    async with rig(monkeypatch) as r:
        r.double.script(Reply(text="Hi."))
        status, headers, raw = await post(r, ask("hello"))
    body = json.loads(raw)
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Request-ID"] and headers["X-Session-Key"].startswith("openai:")
    assert set(body) == {"id", "object", "created", "model", "choices", "usage"}
    assert body["object"] == "chat.completion" and isinstance(body["created"], int)
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hi.", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    assert body["usage"] == {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}


async def test_chunk_order_usage_and_done(monkeypatch: pytest.MonkeyPatch) -> None:
    async with rig(monkeypatch) as r:
        r.double.script(Reply(text="a b c"))
        status, headers, raw = await post(
            r, ask("x", stream=True, stream_options={"include_usage": True})
        )
    events = sse_data(raw)
    assert status == 200
    assert headers["Content-Type"] == "text/event-stream; charset=utf-8"
    assert headers["Cache-Control"] == "no-cache"
    chunks, done = events[:-1], events[-1]
    assert done == "[DONE]"
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({(c["id"], c["created"], c["model"]) for c in chunks}) == 1
    deltas = [c["choices"][0]["delta"] if c["choices"] else None for c in chunks]
    assert deltas == [
        {"role": "assistant", "content": ""},
        {"content": "a "},
        {"content": "b "},
        {"content": "c"},
        {},
        None,  # the usage chunk has no choices
    ]
    assert [c["choices"][0]["finish_reason"] for c in chunks[:-1]] == [None] * 4 + ["stop"]
    assert [c["usage"] for c in chunks[:-1]] == [None] * 5
    assert chunks[-1]["usage"] == {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}


async def test_without_include_usage_there_is_no_usage_at_all(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with rig(monkeypatch) as r:
        r.double.script(Reply(text="ok"))
        _, _, raw = await post(r, ask("x", stream=True))
    events = sse_data(raw)
    assert events[-1] == "[DONE]"
    assert all("usage" not in c for c in events[:-1])
    assert events[-2]["choices"][0]["finish_reason"] == "stop"


async def test_a_provider_that_does_not_stream_still_gives_chunks() -> None:
    config = Config.model_validate({"agent": {"stream": False}})  # the echo provider
    async with running_gateway(config) as gw, aiohttp.ClientSession() as http:
        url = f"{gw.base_url}/v1/chat/completions"
        async with http.post(url, json=ask("hello", stream=True), headers=gw.auth) as resp:
            events = sse_data((await resp.read()).decode())
    contents = [c["choices"][0]["delta"].get("content") for c in events[:-1]]
    assert contents == ["", "[echo: no model configured] You said: hello", None]
    assert events[-1] == "[DONE]"


async def test_recovery_answers_with_the_context_the_client_sent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    req = ChatCompletionRequest.model_validate(
        {
            "model": "open-clanker",
            "temperature": 0.2,
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "I am Ann."},
                {"role": "assistant", "content": "Hi Ann."},
                {"role": "user", "content": "Who am I?"},
            ],
        }
    )
    inbound = openai_inbound(req, conversation(req.messages), {}, None, None)
    # Accepted, then the process died before the model answered.
    store = await Store.open(default_storage_url())
    await store.messages.accept(inbound.message, None, Turn(inbound).context_json())
    await store.close()
    async with rig(monkeypatch) as r:  # recovery starts with the gateway
        for _ in range(500):
            if r.double.requests:
                break
            await asyncio.sleep(0.01)
        await settled(r.gw)
        stored = await r.gw.runtime.store.messages.history(inbound.message.session, 10)
    assert roles_and_texts(r.sent()) == [
        ("system", "Be brief."),
        ("user", "I am Ann."),
        ("assistant", "Hi Ann."),
        ("user", "Who am I?"),
    ]
    assert r.sent()["temperature"] == 0.2
    assert [m.text for m in stored] == ["Who am I?", "Hello from the double."]


async def read_events(resp: aiohttp.ClientResponse, until: str) -> list[str]:
    """SSE lines (without their blank separators) up to and including one starting `until`."""
    lines: list[str] = []
    while True:
        line = (await resp.content.readline()).decode().rstrip("\n")
        if line:
            lines.append(line)
            if line.startswith(until):
                return lines


async def test_a_silent_model_gets_keep_alives_then_its_chunks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    think = asyncio.Event()  # the model answers once the test has seen the keep-alives
    async with rig(monkeypatch) as r, aiohttp.ClientSession() as http:
        r.double.script(Reply(text="At last.", hold=think), Reply(status=500, hold=think))
        r.gw.app.state.sse_keepalive_s = 0.05
        url = f"{r.v1}/chat/completions"
        async with http.post(url, json=ask("slow", stream=True), headers=r.gw.auth) as resp:
            assert resp.status == 200  # started before any text: the model is silent
            first = await read_events(resp, ": keep-alive")
            second = await read_events(resp, ": keep-alive")
            think.set()
            rest = await read_events(resp, "data: [DONE]")
        think.clear()
        async with http.post(url, json=ask("fails", stream=True), headers=r.gw.auth) as resp:
            await read_events(resp, ": keep-alive")
            think.set()
            failed = await read_events(resp, 'data: {"error"')
            after = await resp.read()
    assert json.loads(first[0].removeprefix("data: "))["choices"][0]["delta"]["role"] == "assistant"
    assert second == [": keep-alive"]
    text = "".join(
        json.loads(x.removeprefix("data: "))["choices"][0]["delta"].get("content") or ""
        for x in rest[:-1]
        if x.startswith("data: ")
    )
    assert text == "At last."
    # A failure after the stream started: an error chunk (the SDKs raise it), no [DONE].
    assert json.loads(failed[-1].removeprefix("data: "))["error"]["code"] == "provider_error"
    assert after.strip() == b""  # and nothing after it: no [DONE]


async def test_an_answered_stateless_request_keeps_no_copy_of_the_conversation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The client's messages are stored for recovery only; once answered they are dropped
    from the message's context (a long conversation with images would pile up otherwise)."""
    async with rig(monkeypatch) as r:
        r.double.script(Reply(text="Noted."))
        earlier = [
            {"role": "user", "content": "a long earlier question " * 50},
            {"role": "assistant", "content": "a long earlier answer " * 50},
        ]
        body = {"model": "open-clanker", "messages": [*earlier, {"role": "user", "content": "now"}]}
        status, _headers, _raw = await post(r, body)
        assert status == 200
        await settled(r.gw)

        def contexts(conn: Any) -> list[str]:
            import sqlalchemy as sa

            from open_clanker.storage.schema import messages

            stmt = sa.select(messages.c.context_json).where(messages.c.role == "user")
            return [row[0] for row in conn.execute(stmt)]

        stored = await r.gw.runtime.store.db.read(contexts)
    assert len(stored) == 1 and "client" not in json.loads(stored[0])
    assert "a long earlier question" not in stored[0]
