"""The `/ws` endpoint through a real uvicorn server on loopback and a real WebSocket client."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Origin

from open_clanker.config.model import Config
from open_clanker.core.errors import InputError
from open_clanker.core.types import SessionKey
from open_clanker.gateway.app import create_app
from open_clanker.gateway.runtime import Runtime
from open_clanker.gateway.server import WS_PING_INTERVAL_S, WS_PING_TIMEOUT_S
from open_clanker.gateway.tokens import Tokens
from open_clanker.gateway.ws import WSLimits, open_ws_connections
from open_clanker.gateway.ws_frames import (
    MAX_FRAME_BYTES,
    StopFrame,
    bearer_token,
    origin_allowed,
    parse_frame,
)
from open_clanker.gateway.ws_outbox import SendBuffer
from tests.doubles.openai_double import OpenAIDouble, Reply

TOKEN = "test-token-123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
WS_MAX_BYTES = MAX_FRAME_BYTES + 1024  # as the gateway's server sets it


@dataclass
class Gateway:
    runtime: Runtime
    app: FastAPI
    port: int

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"


@asynccontextmanager
async def run_gateway(
    tmp_path: Path,
    *,
    limits: WSLimits | None = None,
    agent: dict[str, Any] | None = None,
    ping: tuple[float, float] = (WS_PING_INTERVAL_S, WS_PING_TIMEOUT_S),
    **server: Any,
) -> AsyncIterator[Gateway]:
    """The real runtime and app (echo provider unless `agent` says otherwise) behind a real
    uvicorn on 127.0.0.1:<free>, with the gateway's WebSocket ping settings."""
    config = Config.model_validate(
        {
            "storage": {"url": f"sqlite:///{tmp_path}/gateway.db"},
            "limits": {"messages_per_minute": 1000},
            "server": server,
            "agent": agent or {},
        }
    )
    runtime = await Runtime.start(config, Tokens((TOKEN,), generated=False))
    app = create_app(runtime)
    if limits is not None:
        app.state.ws_limits = limits
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)  # clients may connect at once: the backlog holds them until uvicorn accepts
    server_ = uvicorn.Server(
        uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            lifespan="off",
            ws_max_size=WS_MAX_BYTES,
            ws_ping_interval=ping[0],
            ws_ping_timeout=ping[1],
        )
    )
    task = asyncio.create_task(server_.serve(sockets=[sock]))
    try:
        yield Gateway(runtime, app, sock.getsockname()[1])
    finally:
        server_.should_exit = True
        await task
        await runtime.stop(5)
        sock.close()


@pytest.fixture
async def gateway(tmp_path: Path, data_dir: Path) -> AsyncIterator[Gateway]:
    async with run_gateway(tmp_path) as gw:
        yield gw


async def recv(ws: ClientConnection) -> dict[str, Any]:
    frame: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 10))
    return frame


async def recv_until(
    ws: ClientConnection, kind: str
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Frames up to (not including) the first of `kind`, and that frame."""
    before: list[dict[str, Any]] = []
    while True:
        frame = await recv(ws)
        if frame["type"] == kind:
            return before, frame
        before.append(frame)


async def closed_code(ws: ClientConnection) -> int | None:
    """Read until the server closes; the close code it sent."""
    try:
        while True:
            await asyncio.wait_for(ws.recv(), 10)
    except ConnectionClosed:
        return ws.close_code


# --- pure parts -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("origin", "host", "cors", "ok"),
    [
        (None, "127.0.0.1:8000", [], True),
        ("http://127.0.0.1:8000", "127.0.0.1:8000", [], True),
        ("http://localhost", "localhost:80", [], True),
        ("https://chat.example", "chat.example", [], True),
        ("http://evil.example", "127.0.0.1:8000", [], False),
        ("http://127.0.0.1:9999", "127.0.0.1:8000", [], False),
        ("null", "127.0.0.1:8000", [], False),
        ("https://app.example", "127.0.0.1:8000", ["https://app.example/"], True),
    ],
)
def test_origin_allowed(origin: str | None, host: str, cors: list[str], ok: bool) -> None:
    assert origin_allowed(origin, host, cors) is ok


@pytest.mark.parametrize(
    ("header", "token"),
    [(None, None), ("", None), ("Bearer abc", "abc"), ("bearer  abc ", "abc"), ("Basic x", None)],
)
def test_bearer_token(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("{", "invalid_json"),
        ("[1]", "invalid_input"),
        ('{"type": "nope"}', "invalid_input"),
        ('{"type": "chat", "id": "1"}', "invalid_input"),
        ('{"type": "chat", "id": 5, "text": "hi"}', "invalid_input"),
    ],
)
def test_parse_frame_rejects(raw: str, code: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_frame(raw)
    assert caught.value.code == code


# --- through the server ---------------------------------------------------------------------


async def test_header_auth_and_streamed_chat(gateway: Gateway) -> None:
    async with connect(gateway.ws, additional_headers=AUTH) as ws:
        await ws.send(
            json.dumps({"type": "chat", "id": "c1", "text": "hello there", "session": "w"})
        )
        assert await recv(ws) == {"type": "ack", "id": "c1"}
        before, reply = await recv_until(ws, "reply")
    deltas = [f for f in before if f["type"] == "delta"]
    assert len(deltas) > 1
    assert all(f["id"] == "c1" for f in deltas)
    assert "".join(f["text"] for f in deltas) == reply["reply"]["content"]
    assert "hello there" in reply["reply"]["content"]
    assert reply["id"] == "c1"
    assert reply["session"] == "webchat:w"
    # SPEC §5: `message` is the user's message, as in POST /api/v1/chat.
    assert reply["message"]["role"] == "user"
    assert reply["message"]["text"] == "hello there"
    assert reply["message"]["session"] == "webchat:w"
    assert reply["reply"]["provider"] == "echo"
    assert reply["reply"]["finish_reason"] == "stop"
    history = await gateway.runtime.store.messages.session_messages(
        SessionKey("webchat:w"), 10, None
    )
    assert history is not None
    assert [(m.id, m.text) for m in history] == [
        (reply["message"]["id"], "hello there"),
        (reply["reply"]["id"], reply["reply"]["content"]),
    ]


async def test_first_frame_auth_and_new_session(gateway: Gateway) -> None:
    async with connect(gateway.ws) as ws:
        await ws.send(json.dumps({"type": "auth", "token": TOKEN}))
        await ws.send(json.dumps({"type": "chat", "id": "a", "text": "hi"}))
        assert await recv(ws) == {"type": "ack", "id": "a"}
        _, reply = await recv_until(ws, "reply")
    assert reply["session"].startswith("webchat:")
    assert len(reply["session"]) > len("webchat:")


@pytest.mark.parametrize("how", ["header", "frame", "not_auth_frame"])
async def test_bad_token_closes_1008(gateway: Gateway, how: str) -> None:
    headers = {"Authorization": "Bearer wrong"} if how == "header" else {}
    async with connect(gateway.ws, additional_headers=headers) as ws:
        if how == "frame":
            await ws.send(json.dumps({"type": "auth", "token": "wrong"}))
        elif how == "not_auth_frame":
            await ws.send(json.dumps({"type": "ping"}))
        frame = await recv(ws)
        assert frame["type"] == "error"
        assert frame["code"] == "unauthorized"
        assert await closed_code(ws) == 1008


async def test_no_auth_frame_in_time_closes(tmp_path: Path, data_dir: Path) -> None:
    async with (
        run_gateway(tmp_path, limits=WSLimits(auth_timeout_s=0.2)) as gw,
        connect(gw.ws) as ws,
    ):
        frame = await recv(ws)
        assert frame["code"] == "unauthorized"
        assert await closed_code(ws) == 1008


async def test_subscribe_receives_other_connections_messages(gateway: Gateway) -> None:
    async with (
        connect(gateway.ws, additional_headers=AUTH) as watcher,
        connect(gateway.ws, additional_headers=AUTH) as talker,
    ):
        await watcher.send(json.dumps({"type": "subscribe"}))
        # The ping's pong proves the subscription frame was handled before the chat starts.
        await watcher.send(json.dumps({"type": "ping"}))
        assert await recv(watcher) == {"type": "pong"}
        await talker.send(
            json.dumps({"type": "chat", "id": "x", "text": "watched", "session": "s"})
        )
        _, reply = await recv_until(talker, "reply")
        first = await recv(watcher)
        second = await recv(watcher)
    assert first["type"] == second["type"] == "event"
    assert first["message"]["text"] == "watched"
    assert first["message"] == reply["message"]  # the user's message, as stored
    assert second["message"]["role"] == "assistant"
    assert second["message"]["id"] == reply["reply"]["id"]
    assert second["message"]["text"] == reply["reply"]["content"]


async def test_malformed_frames_get_errors_and_socket_stays(gateway: Gateway) -> None:
    async with connect(gateway.ws, additional_headers=AUTH) as ws:
        await ws.send("{not json")
        assert (await recv(ws))["code"] == "invalid_json"
        await ws.send(json.dumps({"type": "launch"}))
        assert (await recv(ws))["code"] == "invalid_input"
        await ws.send(json.dumps({"type": "chat", "id": "q"}))
        frame = await recv(ws)
        assert frame == {
            "type": "error",
            "code": "invalid_input",
            "id": "q",
            "message": frame["message"],
        }
        await ws.send(json.dumps({"type": "ping"}))
        assert await recv(ws) == {"type": "pong"}


async def test_text_over_limit_is_refused(tmp_path: Path, data_dir: Path) -> None:
    async with (
        run_gateway(tmp_path, max_message_chars=10) as gw,
        connect(gw.ws, additional_headers=AUTH) as ws,
    ):
        await ws.send(json.dumps({"type": "chat", "id": "long", "text": "x" * 11}))
        frame = await recv(ws)
        assert frame["type"] == "error"
        assert frame["code"] == "message_too_long"
        assert frame["id"] == "long"
        await ws.send(json.dumps({"type": "ping"}))
        assert await recv(ws) == {"type": "pong"}


async def test_command_reply(gateway: Gateway) -> None:
    async with connect(gateway.ws, additional_headers=AUTH) as ws:
        await ws.send(json.dumps({"type": "chat", "id": "h", "text": "/help", "session": "c"}))
        _, reply = await recv_until(ws, "reply")
    assert reply["reply"]["provider"] == "gateway"
    assert reply["message"]["text"] == "/help"
    assert "/stop" in reply["reply"]["content"]


async def test_frame_over_1_mib_closes_1009(gateway: Gateway) -> None:
    async with connect(gateway.ws, additional_headers=AUTH, max_size=None) as ws:
        await ws.send("x" * (MAX_FRAME_BYTES + 1))
        assert await closed_code(ws) == 1009


async def test_connection_cap_closes_1013(tmp_path: Path, data_dir: Path) -> None:
    cap = open_ws_connections() + 1
    async with (
        run_gateway(tmp_path, max_ws_connections=cap) as gw,
        connect(gw.ws, additional_headers=AUTH) as first,
    ):
        await first.send(json.dumps({"type": "ping"}))
        assert await recv(first) == {"type": "pong"}
        async with connect(gw.ws, additional_headers=AUTH) as second:
            assert await closed_code(second) == 1013
            assert second.close_reason == "try again later"


async def test_cross_site_origin_refused(gateway: Gateway) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(
            gateway.ws, additional_headers=AUTH, origin=Origin("http://evil.example")
        ):
            pass
    assert refused.value.response.status_code == 403
    async with connect(
        gateway.ws,
        additional_headers=AUTH,
        origin=Origin(f"http://127.0.0.1:{gateway.port}"),
    ) as ws:
        await ws.send(json.dumps({"type": "ping"}))
        assert await recv(ws) == {"type": "pong"}


async def test_client_leaving_mid_stream_still_stores_reply(gateway: Gateway) -> None:
    async with gateway.runtime.bus.subscribe() as events:
        async with connect(gateway.ws, additional_headers=AUTH) as ws:
            await ws.send(
                json.dumps({"type": "chat", "id": "g", "text": "bye now", "session": "gone"})
            )
            assert await recv(ws) == {"type": "ack", "id": "g"}
        # The socket is closed; the turn still finishes and its reply is published and stored.
        while (message := await asyncio.wait_for(events.get(), 10)).role.value != "assistant":
            pass
    assert "bye now" in message.text
    assert message.session == "webchat:gone"


async def test_concurrent_chats_on_one_socket(gateway: Gateway) -> None:
    async with connect(gateway.ws, additional_headers=AUTH) as ws:
        for n in range(3):
            await ws.send(
                json.dumps({"type": "chat", "id": f"m{n}", "text": f"n{n}", "session": f"s{n}"})
            )
        replies: dict[str, str] = {}
        texts: dict[str, str] = {}
        while len(replies) < 3:
            frame = await recv(ws)
            if frame["type"] == "delta":
                texts[frame["id"]] = texts.get(frame["id"], "") + frame["text"]
            elif frame["type"] == "reply":
                replies[frame["id"]] = frame["reply"]["content"]
    assert replies == texts
    assert all(f"n{n}" in replies[f"m{n}"] for n in range(3))


class _StuckSocket:
    """A client that never reads: the writer blocks on its first send."""

    def __init__(self) -> None:
        self.closed_with: tuple[int, str] | None = None
        self.sent: list[dict[str, Any]] = []
        self.release = asyncio.Event()

    async def send_text(self, text: str) -> None:
        await self.release.wait()
        self.sent.append(json.loads(text))

    async def close(self, code: int, reason: str) -> None:
        self.closed_with = (code, reason)


async def test_waiting_deltas_merge_into_one_frame() -> None:
    sock = _StuckSocket()
    buffer = SendBuffer(sock, max_bytes=1000)  # type: ignore[arg-type]
    writer = asyncio.create_task(buffer.run())
    buffer.send({"type": "ack", "id": "a"})
    await asyncio.sleep(0)  # the writer takes the ack and blocks on the socket
    for n in range(300):  # 300 frames, far more bytes than the bound if each were kept
        buffer.send({"type": "delta", "id": "a", "text": f"{n % 10}"})
    buffer.send({"type": "delta", "id": "b", "text": "other chat"})
    buffer.send({"type": "delta", "id": "a", "text": "\u00e9"})
    assert not buffer.closed
    assert buffer.waiting_bytes < 1000
    sock.release.set()
    while len(sock.sent) < 4:
        await asyncio.sleep(0)
    writer.cancel()
    assert sock.sent == [
        {"type": "ack", "id": "a"},
        {"type": "delta", "id": "a", "text": "0123456789" * 30},
        {"type": "delta", "id": "b", "text": "other chat"},
        {"type": "delta", "id": "a", "text": "\u00e9"},
    ]


async def test_client_that_stops_reading_is_dropped_not_buffered() -> None:
    sock = _StuckSocket()
    buffer = SendBuffer(sock, max_bytes=200)  # type: ignore[arg-type]
    writer = asyncio.create_task(buffer.run())
    buffer.send({"type": "pong"})
    await asyncio.sleep(0)  # the writer takes it and blocks on the socket
    buffer.send({"type": "event", "message": {"text": "x" * 150}}, droppable=True)
    buffer.send({"type": "event", "message": {"text": "y" * 150}}, droppable=True)  # dropped
    assert not buffer.closed
    buffer.send({"type": "delta", "id": "a", "text": "z" * 100})  # cannot be dropped
    assert buffer.closed
    assert buffer.waiting_bytes == 0
    sock.release.set()
    await asyncio.wait_for(writer, 5)
    assert sock.closed_with == (1008, "client too slow")
    assert sock.sent == [{"type": "pong"}]


async def test_one_frame_larger_than_the_bound_still_goes_out() -> None:
    sock = _StuckSocket()
    sock.release.set()
    buffer = SendBuffer(sock, max_bytes=10)  # type: ignore[arg-type]
    writer = asyncio.create_task(buffer.run())
    buffer.send({"type": "reply", "id": "r", "text": "a long answer"})
    while not sock.sent:
        await asyncio.sleep(0)
    writer.cancel()
    assert not buffer.closed
    assert sock.sent == [{"type": "reply", "id": "r", "text": "a long answer"}]


async def test_on_demand_writer_runs_only_while_frames_wait() -> None:
    sock = _StuckSocket()
    buffer = SendBuffer(sock, max_bytes=1000, on_demand=True)  # type: ignore[arg-type]
    assert buffer.writer is None  # idle: no task
    buffer.send({"type": "ack", "id": "a"})
    first = buffer.writer
    assert first is not None
    await asyncio.sleep(0)  # it takes the ack and blocks on the socket
    buffer.send({"type": "pong"})
    assert buffer.writer is first  # one writer at a time, frames stay in order
    sock.release.set()
    await asyncio.wait_for(first, 5)
    assert buffer.writer is None
    assert sock.sent == [{"type": "ack", "id": "a"}, {"type": "pong"}]
    buffer.close(1008, "bye")  # a close starts a writer too, which sends it and ends
    closing = buffer.writer
    assert closing is not None
    await asyncio.wait_for(closing, 5)
    assert sock.closed_with == (1008, "bye")
    assert buffer.writer is None


async def test_repeated_bad_tokens_lock_the_address_out(gateway: Gateway) -> None:
    for _ in range(10):
        async with connect(gateway.ws, additional_headers={"Authorization": "Bearer no"}) as ws:
            assert await closed_code(ws) == 1008
    good = {"Authorization": f"Bearer {TOKEN}"}
    with pytest.raises(InvalidStatus) as refused:
        async with connect(gateway.ws, additional_headers=good):
            pass
    assert refused.value.response.status_code == 429
    assert int(refused.value.response.headers["Retry-After"]) > 200


def test_stop_frame_parses() -> None:
    frame = parse_frame('{"type": "stop", "session": "work"}')
    assert isinstance(frame, StopFrame) and frame.session == "work"
    for raw in ('{"type": "stop"}', '{"type": "stop", "session": ""}'):
        with pytest.raises(InputError) as caught:
            parse_frame(raw)
        assert caught.value.code == "invalid_input"


async def test_long_reply_to_a_client_reading_at_a_normal_pace(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """~2,000 tokens streamed as fast as the model double can, to a client that takes a
    moment over every frame: it gets the whole reply and the socket stays open."""
    monkeypatch.setenv("OPENCLAW_OPENAI_API_KEY", "sk-test")
    words = " ".join(f"word{n}" for n in range(2000))
    async with OpenAIDouble() as double:
        double.script(Reply(text=words))
        agent = {"provider": "openai", "base_url": double.base_url}
        async with (
            run_gateway(tmp_path, agent=agent) as gw,
            connect(gw.ws, additional_headers=AUTH) as ws,
        ):
            await ws.send(json.dumps({"type": "chat", "id": "long", "text": "talk a lot"}))
            text, frames_seen = "", 0
            while True:
                frame = await recv(ws)
                frames_seen += 1
                await asyncio.sleep(0.002)  # a client busy rendering each frame
                if frame["type"] == "delta":
                    text += frame["text"]
                elif frame["type"] == "reply":
                    break
            await ws.send(json.dumps({"type": "ping"}))
            assert await recv(ws) == {"type": "pong"}
    assert text == words == frame["reply"]["content"]
    assert frames_seen > 2


async def test_server_pings_and_closes_a_peer_that_never_answers(
    tmp_path: Path, data_dir: Path
) -> None:
    import aiohttp

    async with (
        run_gateway(tmp_path, ping=(0.05, 0.2)) as gw,
        aiohttp.ClientSession() as http,
        http.ws_connect(gw.ws, headers=AUTH, autoping=False) as ws,
    ):
        kinds = []
        while True:
            msg = await asyncio.wait_for(ws.receive(), 10)
            kinds.append(msg.type)
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                break
    assert kinds[0] is aiohttp.WSMsgType.PING  # unanswered: the server gives up on us
    assert kinds[-1] is aiohttp.WSMsgType.CLOSE
    assert ws.close_code == 1011


def test_the_gateway_pings_websockets() -> None:
    assert 0 < WS_PING_INTERVAL_S <= 30 and 0 < WS_PING_TIMEOUT_S <= 30
