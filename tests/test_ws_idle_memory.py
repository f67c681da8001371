"""What an open WebSocket holds: the slim queue and flag, the handshake forgotten after the
accept, `/ws` served by the guard itself -- and that none of it changes what a client sees.

The protocol tests run the gateway's own uvicorn protocol classes (tests/harness.py) and speak
to it with the `websockets` client, or with raw bytes where the order on the wire matters.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import json
import os
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from open_clanker.gateway.ws_slim import Flag, Inbox
from tests.harness import TEST_TOKEN, running_gateway

AUTH = {"Authorization": f"Bearer {TEST_TOKEN}"}


# -- the queue and the flag -------------------------------------------------------------------


async def test_inbox_is_first_in_first_out_and_waits_for_an_item() -> None:
    inbox = Inbox()
    assert inbox.empty()
    inbox.put_nowait(1)
    inbox.put_nowait(2)
    assert not inbox.empty()
    assert await inbox.get() == 1
    waiting = asyncio.create_task(inbox.get())
    assert await inbox.get() == 2
    await asyncio.sleep(0)
    assert not waiting.done()
    inbox.put_nowait(3)
    assert await asyncio.wait_for(waiting, 1) == 3
    assert inbox.empty()


async def test_inbox_a_cancelled_getter_loses_no_item() -> None:
    inbox = Inbox()
    first = asyncio.create_task(inbox.get())
    second = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    inbox.put_nowait("x")  # wakes `first` ...
    first.cancel()  # ... which is cancelled before it runs: "x" goes to `second`
    assert await asyncio.wait_for(second, 1) == "x"
    with pytest.raises(asyncio.CancelledError):
        await first
    third = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    third.cancel()
    with pytest.raises(asyncio.CancelledError):
        await third
    inbox.put_nowait("y")  # nobody waits: kept for the next get
    assert await inbox.get() == "y"


async def test_flag_set_wakes_every_waiter_and_clear_makes_them_wait() -> None:
    flag = Flag()
    assert not flag.is_set()
    waiters = [asyncio.create_task(flag.wait()) for _ in range(3)]
    await asyncio.sleep(0)
    assert not any(w.done() for w in waiters)
    flag.set()
    assert await asyncio.wait_for(asyncio.gather(*waiters), 1) == [True, True, True]
    assert await flag.wait() is True  # set: no wait
    flag.clear()
    later = asyncio.create_task(flag.wait())
    await asyncio.sleep(0.01)
    assert not later.done()
    later.cancel()
    with pytest.raises(asyncio.CancelledError):
        await later
    flag.set()
    assert await asyncio.wait_for(flag.wait(), 1) is True


# -- the protocol ----------------------------------------------------------------------------


def _open_sockets() -> list[Any]:
    return [o for o in gc.get_objects() if type(o).__name__ == "GuardedWebSocket"]


async def test_an_open_socket_forgets_its_handshake_and_still_speaks(
    tmp_path: Path, data_dir: Path
) -> None:
    async with running_gateway() as gw, connect(gw.base_url.replace("http", "ws") + "/ws",
                                                additional_headers=AUTH) as ws:  # fmt: skip
        await ws.send(json.dumps({"type": "ping"}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {"type": "pong"}
        (server_side,) = [s for s in _open_sockets() if not s.disconnected]
        assert server_side.request is None
        assert server_side.response is None
        # The server-side parser now is the frame parser itself, not the handshake's wrapper
        # (whose frame held the request for the socket's life).
        assert server_side.conn.parser.gi_code.co_qualname == "Protocol.parse"
        assert isinstance(server_side.queue, Inbox)
        # Frames after the swap: a fragmented message, then one over the size limit.
        await ws.send(iter(['{"type":', ' "ping"}']))
        assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {"type": "pong"}
        await ws.send("x" * (2 * 1024 * 1024))
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1009


def _handshake(port: int, host: str | None = None, extra: str = "") -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET /ws HTTP/1.1\r\nHost: {host or f'127.0.0.1:{port}'}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"{extra}\r\n"
    ).encode()


def _auth_line() -> str:
    return f"Authorization: Bearer {TEST_TOKEN}\r\n"


async def test_the_guard_still_refuses_an_upgrade_for_another_host(
    tmp_path: Path, data_dir: Path
) -> None:
    async with running_gateway() as gw:
        port = int(gw.base_url.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(_handshake(port, host="rebound.example", extra=_auth_line()))
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            assert head.startswith(b"HTTP/1.1 403")
        finally:
            writer.close()


async def test_an_upgrade_to_another_path_is_not_served(tmp_path: Path, data_dir: Path) -> None:
    async with running_gateway() as gw:
        port = int(gw.base_url.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            request = _handshake(port, extra=_auth_line()).replace(b"GET /ws ", b"GET /wsx ")
            writer.write(request)
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            assert not head.startswith(b"HTTP/1.1 101")
        finally:
            writer.close()
