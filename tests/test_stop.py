"""`/stop` through the whole gateway: HTTP (JSON and SSE), WebSocket and Telegram, against a
provider double that streams a few words and then stalls, as a long answer would."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from websockets.asyncio.client import ClientConnection, connect

from open_clanker.config.model import Config
from open_clanker.pipeline.commands import NOTHING_TO_STOP_TEXT, STOPPED_TEXT
from tests.doubles.openai_double import OpenAIDouble, Reply
from tests.doubles.telegram_double import TelegramDouble, message, update
from tests.harness import RunningGateway, running_gateway, settled

pytestmark = pytest.mark.usefixtures("data_dir")

LONG = "one two three four five six seven eight nine ten eleven twelve"
STALLING = Reply(text=LONG, stall_after=3)  # "one two three " then nothing, for an hour
STREAMED = "one two three "


@asynccontextmanager
async def gateway_with_model(
    monkeypatch: pytest.MonkeyPatch, *replies: Reply, **extra: Any
) -> AsyncIterator[tuple[RunningGateway, OpenAIDouble]]:
    monkeypatch.setenv("OPENCLAW_OPENAI_API_KEY", "sk-test")
    async with OpenAIDouble() as double:
        double.script(*replies)
        config = Config.model_validate(
            {
                "agent": {"provider": "openai", "base_url": double.base_url, "max_retries": 0},
                **extra,
            }
        )
        async with running_gateway(config) as gw:
            yield gw, double


def stored_replies(data_dir: Path, session: str) -> list[tuple[str, dict[str, Any] | None]]:
    """(text, response) of each assistant message of a session, oldest first, as stored."""
    with sqlite3.connect(data_dir / "open-clanker.db") as db:
        rows = db.execute(
            "SELECT text, response_json FROM messages WHERE session_key = ? AND role = 'assistant'"
            " ORDER BY seq",
            (session,),
        ).fetchall()
    return [(text, json.loads(raw) if raw else None) for text, raw in rows]


async def stop_via_api(http: aiohttp.ClientSession, gw: RunningGateway, key: str) -> Any:
    async with http.post(f"{gw.base_url}/api/v1/sessions/{key}/stop", headers=gw.auth) as r:
        return r.status, await r.json()


class SSEReader:
    """Server-sent events read as they arrive (comment lines kept as ("comment", text))."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._lines = response.content
        self.events: list[tuple[str, Any]] = []

    async def next(self) -> tuple[str, Any]:
        event, data = "message", None
        while True:
            raw = await asyncio.wait_for(self._lines.readline(), 10)
            if not raw:
                raise AssertionError("the stream ended")
            line = raw.decode().rstrip("\n")
            if line.startswith(":"):
                self.events.append(("comment", line))
                return self.events[-1]
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: "):
                data = json.loads(line.removeprefix("data: "))
            elif line == "" and data is not None:
                self.events.append((event, data))
                return self.events[-1]

    async def text_until(self, wanted: str) -> str:
        text = ""
        while text != wanted:
            kind, data = await self.next()
            assert kind == "delta", (kind, data)
            text += data["text"]
        return text


async def test_stop_a_streamed_http_answer(monkeypatch: pytest.MonkeyPatch, data_dir: Path) -> None:
    async with (
        gateway_with_model(monkeypatch, STALLING) as (gw, _),
        aiohttp.ClientSession() as http,
    ):
        assert await stop_via_api(http, gw, "talk") == (
            404,
            {"error": {"code": "not_found", "message": "There is no session 'api:talk'."}},
        )
        body = {"text": "tell me everything", "session": "talk", "stream": True}
        async with http.post(f"{gw.base_url}/api/v1/chat", json=body, headers=gw.auth) as r:
            stream = SSEReader(r)
            assert await stream.text_until(STREAMED) == STREAMED
            assert await stop_via_api(http, gw, "talk") == (
                200,
                {"session": "api:talk", "stopped": True},
            )
            kind, done = await stream.next()
            assert await r.content.read() == b""  # nothing after `done`
        assert kind == "done"
        assert done["reply"]["finish_reason"] == "stopped"
        assert done["reply"]["content"] == STREAMED
        assert done["message"]["text"] == "tell me everything"
        assert await stop_via_api(http, gw, "talk") == (
            200,
            {"session": "api:talk", "stopped": False},
        )
        await settled(gw)
    [(text, response)] = stored_replies(data_dir, "api:talk")
    assert text == STREAMED
    assert response is not None and response["finish_reason"] == "stopped"


async def test_stop_a_json_answer_that_has_streamed_nothing(
    monkeypatch: pytest.MonkeyPatch, data_dir: Path
) -> None:
    hold = asyncio.Event()  # the model never answers until the test is over
    async with (
        gateway_with_model(monkeypatch, Reply(text="never seen", hold=hold)) as (gw, double),
        aiohttp.ClientSession() as http,
    ):
        body = {"text": "think hard", "session": "quiet"}
        asking = asyncio.create_task(
            http.post(f"{gw.base_url}/api/v1/chat", json=body, headers=gw.auth)
        )
        while not double.requests:
            await asyncio.sleep(0.01)
        assert await stop_via_api(http, gw, "quiet") == (
            200,
            {"session": "api:quiet", "stopped": True},
        )
        async with await asking as r:
            assert r.status == 200
            answer = await r.json()
    assert answer["reply"]["finish_reason"] == "stopped"
    assert answer["reply"]["content"] == ""
    [(text, response)] = stored_replies(data_dir, "api:quiet")
    assert text == "" and response is not None and response["finish_reason"] == "stopped"


async def test_stop_as_a_chat_message_is_not_queued_behind_the_answer(
    monkeypatch: pytest.MonkeyPatch, data_dir: Path
) -> None:
    async with (
        gateway_with_model(monkeypatch, STALLING) as (gw, _),
        aiohttp.ClientSession() as http,
    ):
        url, auth = f"{gw.base_url}/api/v1/chat", gw.auth
        body = {"text": "go on", "session": "cmd", "stream": True}
        async with http.post(url, json=body, headers=auth) as r:
            stream = SSEReader(r)
            await stream.text_until(STREAMED)
            # The same session's turn is still running: /stop must not wait for it to end.
            async with http.post(url, json={"text": "/stop", "session": "cmd"}, headers=auth) as s:
                command = await s.json()
            kind, done = await stream.next()
        assert command["reply"]["content"] == STOPPED_TEXT
        assert (kind, done["reply"]["finish_reason"]) == ("done", "stopped")
        async with http.post(url, json={"text": "/stop", "session": "cmd"}, headers=auth) as s:
            assert (await s.json())["reply"]["content"] == NOTHING_TO_STOP_TEXT
    # The command and its answer are kept out of the conversation; the partial answer is in.
    assert [text for text, _ in stored_replies(data_dir, "api:cmd")] == [
        STREAMED,
        STOPPED_TEXT,
        NOTHING_TO_STOP_TEXT,
    ]


async def recv(ws: ClientConnection) -> dict[str, Any]:
    frame: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 10))
    return frame


async def test_stop_over_the_websocket(monkeypatch: pytest.MonkeyPatch, data_dir: Path) -> None:
    async with gateway_with_model(monkeypatch, STALLING) as (gw, _):
        ws_url = gw.base_url.replace("http://", "ws://") + "/ws"
        async with connect(ws_url, additional_headers=gw.auth) as ws:
            await ws.send(json.dumps({"type": "stop", "session": "w"}))
            assert await recv(ws) == {"type": "stopped", "session": "webchat:w", "stopped": False}
            await ws.send(
                json.dumps({"type": "chat", "id": "c", "text": "long one", "session": "w"})
            )
            assert await recv(ws) == {"type": "ack", "id": "c"}
            text = ""
            while text != STREAMED:
                frame = await recv(ws)
                assert frame["type"] == "delta"
                text += frame["text"]
            await ws.send(json.dumps({"type": "stop", "session": "w"}))
            assert await recv(ws) == {"type": "stopped", "session": "webchat:w", "stopped": True}
            reply = await recv(ws)  # no delta in between
            await ws.send(json.dumps({"type": "stop"}))
            refused = await recv(ws)
        assert reply["type"] == "reply" and reply["id"] == "c"
        assert reply["reply"]["finish_reason"] == "stopped"
        assert reply["reply"]["content"] == STREAMED
        assert reply["message"]["text"] == "long one"
        assert refused["type"] == "error" and refused["code"] == "invalid_input"
        await settled(gw)
    assert [text for text, _ in stored_replies(data_dir, "webchat:w")] == [STREAMED]


async def test_stop_in_telegram(monkeypatch: pytest.MonkeyPatch, data_dir: Path) -> None:
    telegram = TelegramDouble()
    await telegram.start()
    # Slow enough for a draft (edited about once a second) to show, then stalled.
    slow = Reply(text=LONG, delta_delay_s=0.2, stall_after=9)
    try:
        async with gateway_with_model(
            monkeypatch,
            slow,
            access={"dm_policy": "allowlist"},
            channels={
                "telegram": {
                    "bot_token": telegram.token,
                    "api_base_url": telegram.base_url,
                    "allowed_chats": [42],
                }
            },
        ) as (gw, _):
            telegram.push(update(message("write me an essay", chat_id=42)))
            await telegram.wait_until(lambda: any(s.text.endswith(" …") for s in telegram.sent), 20)
            draft = next(s for s in telegram.sent if s.text.endswith(" …"))
            telegram.push(update(message("/stop", chat_id=42)))
            await telegram.wait_until(
                lambda: any(s.text == STOPPED_TEXT for s in telegram.sent), 20
            )
            await settled(gw)
            [(partial, response)] = stored_replies(data_dir, "telegram:42")[:1]
            shown = [s.text.strip() for s in telegram.sent if s.chat_id == 42]
    finally:
        await telegram.stop()
    assert response is not None and response["finish_reason"] == "stopped"
    assert partial and LONG.startswith(partial) and len(partial) < len(LONG)
    assert partial.startswith(draft.text.removesuffix(" …"))
    # The draft became the partial answer in place; the only other message is the notice.
    assert shown == [partial.strip(), STOPPED_TEXT]
