"""The HTTP API through a real server on loopback, driven by a real HTTP client (aiohttp)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from open_clanker.config.model import Config
from tests.harness import running_gateway

pytestmark = pytest.mark.usefixtures("data_dir")


async def post_chat(http: aiohttp.ClientSession, gw: Any, body: Any, **kw: Any) -> tuple[int, Any]:
    async with http.post(f"{gw.base_url}/api/v1/chat", json=body, headers=gw.auth, **kw) as r:
        return r.status, await r.json()


async def test_health_needs_no_token_and_api_does() -> None:
    async with running_gateway() as gw, aiohttp.ClientSession() as http:
        async with http.get(f"{gw.base_url}/health") as r:
            assert r.status == 200
            assert await r.text() == "OK"
        async with http.get(f"{gw.base_url}/api/v1/status") as r:
            assert r.status == 401
            assert (await r.json())["error"]["code"] == "unauthorized"
        bad = {"Authorization": "Bearer wrong-token"}
        async with http.get(f"{gw.base_url}/api/v1/status", headers=bad) as r:
            assert r.status == 401
        async with http.get(f"{gw.base_url}/api/v1/status?token={gw.token}") as r:
            assert r.status == 401  # tokens never travel in a query string


async def test_chat_echo_and_history_keeps_roles() -> None:
    async with running_gateway() as gw, aiohttp.ClientSession() as http:
        status, first = await post_chat(http, gw, {"text": "hello", "session": "work"})
        assert status == 200
        assert first["session"] == "api:work"
        assert first["message"]["role"] == "user"
        assert "hello" in first["reply"]["content"]
        assert first["reply"]["provider"] == "echo"
        assert "echo" in first["reply"]["content"]  # labelled as an echo
        await post_chat(http, gw, {"text": "second", "session": "api:work"})
        url = f"{gw.base_url}/api/v1/sessions/api%3Awork/messages"
        async with http.get(url, headers=gw.auth) as r:
            body = await r.json()
        roles = [m["role"] for m in body["messages"]]
        texts = [m["text"] for m in body["messages"]]
        assert roles == ["user", "assistant", "user", "assistant"]
        assert texts[0] == "hello" and texts[2] == "second"
        async with http.get(f"{gw.base_url}/api/v1/sessions", headers=gw.auth) as r:
            sessions = (await r.json())["sessions"]
        assert sessions[0]["key"] == "api:work"
        assert sessions[0]["message_count"] == 4


async def test_chat_without_session_makes_one() -> None:
    async with running_gateway() as gw, aiohttp.ClientSession() as http:
        _, a = await post_chat(http, gw, {"text": "one"})
        _, b = await post_chat(http, gw, {"text": "two"})
        assert a["session"].startswith("api:")
        assert a["session"] != b["session"]


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        (b"{not json", 400, "invalid_json"),
        (b'{"session": "x"}', 422, "invalid_input"),
        (b'{"text": 5}', 422, "invalid_input"),
        (b'{"text": "hi", "extra": 1}', 422, "invalid_input"),
        (b"[]", 422, "invalid_input"),
    ],
)
async def test_bad_bodies_get_named_errors(raw: bytes, status: int, code: str) -> None:
    async with running_gateway() as gw, aiohttp.ClientSession() as http:
        async with http.post(f"{gw.base_url}/api/v1/chat", data=raw, headers=gw.auth) as r:
            assert r.status == status
            assert (await r.json())["error"]["code"] == code


async def test_too_long_is_413_and_nothing_stored() -> None:
    config = Config.model_validate({"server": {"max_message_chars": 10}})
    async with running_gateway(config) as gw, aiohttp.ClientSession() as http:
        status, body = await post_chat(http, gw, {"text": "x" * 11, "session": "long"})
        assert status == 413
        assert body["error"]["code"] == "message_too_long"
        async with http.get(f"{gw.base_url}/api/v1/sessions/long/messages", headers=gw.auth) as r:
            assert r.status == 404


async def test_rate_limit_is_429_with_retry_after() -> None:
    config = Config.model_validate({"limits": {"messages_per_minute": 2}})
    async with running_gateway(config) as gw, aiohttp.ClientSession() as http:
        for _ in range(2):
            status, _ = await post_chat(http, gw, {"text": "hi", "session": "rl"})
            assert status == 200
        async with http.post(
            f"{gw.base_url}/api/v1/chat", json={"text": "hi", "session": "rl"}, headers=gw.auth
        ) as r:
            assert r.status == 429
            assert int(r.headers["Retry-After"]) >= 1
            assert (await r.json())["error"]["code"] == "rate_limited"
        status, _ = await post_chat(http, gw, {"text": "hi", "session": "other"})
        assert status == 200  # the API's limit counts per session


async def test_commands_answer_without_the_model() -> None:
    async with running_gateway() as gw, aiohttp.ClientSession() as http:
        await post_chat(http, gw, {"text": "remember me", "session": "c"})
        _, helped = await post_chat(http, gw, {"text": "/help", "session": "c"})
        assert helped["reply"]["provider"] == "gateway"
        assert "/new" in helped["reply"]["content"]
        _, st = await post_chat(http, gw, {"text": "/status", "session": "c"})
        assert "echo" in st["reply"]["content"]
        _, new = await post_chat(http, gw, {"text": "/reset", "session": "c"})
        assert "new conversation" in new["reply"]["content"].lower()
        async with http.get(f"{gw.base_url}/api/v1/sessions/c/messages", headers=gw.auth) as r:
            texts = [m["text"] for m in (await r.json())["messages"]]
        assert "remember me" not in texts  # the fresh session starts without the old turns


async def test_delete_session_and_unknown_session() -> None:
    async with running_gateway() as gw, aiohttp.ClientSession() as http:
        await post_chat(http, gw, {"text": "hi", "session": "d"})
        async with http.delete(f"{gw.base_url}/api/v1/sessions/d", headers=gw.auth) as r:
            assert r.status == 200
        async with http.get(f"{gw.base_url}/api/v1/sessions/d/messages", headers=gw.auth) as r:
            assert (await r.json())["messages"] == []
        async with http.delete(f"{gw.base_url}/api/v1/sessions/nope", headers=gw.auth) as r:
            assert r.status == 404
            assert (await r.json())["error"]["code"] == "not_found"
        async with http.get(f"{gw.base_url}/no/such/route", headers=gw.auth) as r:
            assert r.status == 404
            assert (await r.json())["error"]["code"] == "not_found"


async def test_streamed_chat_sends_deltas_then_done() -> None:
    async with running_gateway() as gw, aiohttp.ClientSession() as http:
        body = {"text": "stream this please", "session": "s", "stream": True}
        async with http.post(f"{gw.base_url}/api/v1/chat", json=body, headers=gw.auth) as r:
            assert r.headers["Content-Type"].startswith("text/event-stream")
            raw = (await r.read()).decode()
        events = [block.split("\n", 1) for block in raw.strip().split("\n\n")]
        kinds = [e[0].removeprefix("event: ") for e in events]
        datas = [json.loads(e[1].removeprefix("data: ")) for e in events]
        assert kinds[-1] == "done"
        assert kinds.count("delta") >= 3  # word by word
        joined = "".join(d["text"] for k, d in zip(kinds, datas, strict=True) if k == "delta")
        assert joined == datas[-1]["reply"]["content"]
        async with http.get(f"{gw.base_url}/api/v1/sessions/s/messages", headers=gw.auth) as r:
            stored = (await r.json())["messages"]
        assert stored[-1]["text"] == joined  # stored once, whole


async def test_idempotency_key_returns_first_answer() -> None:
    async with running_gateway() as gw, aiohttp.ClientSession() as http:
        headers = {**gw.auth, "Idempotency-Key": "abc-1"}
        url = f"{gw.base_url}/api/v1/chat"
        async with http.post(url, json={"text": "once", "session": "i"}, headers=headers) as r:
            first = await r.json()
        async with http.post(url, json={"text": "once", "session": "i"}, headers=headers) as r:
            second = await r.json()
        assert first == second
        async with http.get(f"{gw.base_url}/api/v1/sessions/i/messages", headers=gw.auth) as r:
            assert len((await r.json())["messages"]) == 2


async def test_host_header_checked_on_loopback_bind() -> None:
    async with running_gateway() as gw, aiohttp.ClientSession() as http:
        evil = {**gw.auth, "Host": "evil.example:18789"}
        async with http.get(f"{gw.base_url}/api/v1/status", headers=evil) as r:
            assert r.status == 403
            assert (await r.json())["error"]["code"] == "forbidden_host"
        async with http.get(f"{gw.base_url}/health", headers={"Host": "evil.example"}) as r:
            assert r.status == 200  # liveness stays reachable for container health checks
        ok = {**gw.auth, "Host": "localhost:1234"}
        async with http.get(f"{gw.base_url}/api/v1/status", headers=ok) as r:
            assert r.status == 200


async def test_send_to_disabled_channel_is_404() -> None:
    async with running_gateway() as gw, aiohttp.ClientSession() as http:
        body = {"channel": "telegram", "channel_id": "1", "text": "hi"}
        async with http.post(f"{gw.base_url}/api/v1/message", json=body, headers=gw.auth) as r:
            assert r.status == 404
            assert (await r.json())["error"]["code"] == "not_found"


async def test_ready_and_status_shapes(data_dir: Path) -> None:
    async with running_gateway() as gw, aiohttp.ClientSession() as http:
        async with http.get(f"{gw.base_url}/ready") as r:
            ready = await r.json()
        assert r.status == 200
        assert ready["status"] == "ready"
        assert ready["storage"] == {"ok": True}
        assert ready["provider"]["name"] == "echo"
        assert ready["channels"]["webchat"]["state"] == "connected"
        async with http.get(f"{gw.base_url}/api/v1/status", headers=gw.auth) as r:
            status = await r.json()
        assert status["provider"]["name"] == "echo"
        assert "counts" in status and status["counts"]["messages"] == 0


@pytest.mark.postgres
@pytest.mark.skipif(
    not os.environ.get("OPENCLAW_TEST_POSTGRES_URL"),
    reason="OPENCLAW_TEST_POSTGRES_URL is not set (CI sets it)",
)
async def test_whole_gateway_on_postgresql(tmp_path: Path) -> None:
    from tests.storage_urls import fresh_store

    async for store in fresh_store("postgresql", tmp_path):  # empty schema, then closed
        await store.close()
    url = os.environ["OPENCLAW_TEST_POSTGRES_URL"]
    config = Config.model_validate({"storage": {"url": url}})
    async with running_gateway(config) as gw, aiohttp.ClientSession() as http:
        assert gw.runtime.store.backend == "postgresql"
        await post_chat(http, gw, {"text": "on postgres", "session": "pg"})
        status, second = await post_chat(http, gw, {"text": "again", "session": "pg"})
        assert "again" in second["reply"]["content"]
        assert status == 200
        async with http.get(f"{gw.base_url}/api/v1/sessions/pg/messages", headers=gw.auth) as r:
            texts = [m["text"] for m in (await r.json())["messages"]]
        assert texts[0] == "on postgres" and texts[2] == "again" and len(texts) == 4
