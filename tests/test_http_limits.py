"""Issue 13, item 3 with raw sockets against the real server: a huge request head is refused
early (no memory growth), a trickled or idle one is cut off, and one address gets at most its
share of connections (WebSockets included)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.client import connect

from open_clanker.config.model import Config
from open_clanker.gateway.http_protocol import ConnectionLimits, protocol_classes
from tests.harness import RunningGateway, running_gateway

pytestmark = pytest.mark.usefixtures("data_dir")

MB = 1024 * 1024


def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def protocols(**limits: Any) -> dict[str, Any]:
    http, ws = protocol_classes(ConnectionLimits(**limits))
    return {"http": http, "ws": ws}


@pytest.fixture
async def gw() -> AsyncIterator[RunningGateway]:
    async with running_gateway(protocols=protocols(head_timeout_s=0.5)) as running:
        yield running


def port_of(gw: RunningGateway) -> int:
    return int(gw.base_url.rsplit(":", 1)[1])


def _send_huge_header(port: int, total: int) -> tuple[int, bytes]:
    """Send a request whose one header is `total` bytes; (bytes sent, what came back)."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.settimeout(10)
    sent = 0
    answer = b""
    try:
        sock.sendall(b"GET /api/v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Huge: ")
        chunk = b"a" * 65536
        while sent < total:
            sock.sendall(chunk)
            sent += len(chunk)
        sock.sendall(b"\r\n\r\n")
    except OSError:  # reset or broken pipe: the server closed on us mid-header
        pass
    try:
        while True:
            data = sock.recv(4096)
            if not data:
                break
            answer += data
    except OSError:
        pass
    finally:
        sock.close()
    return sent, answer


async def test_a_64_mb_header_is_refused_early_without_growing_memory(
    gw: RunningGateway,
) -> None:
    before = rss_mb()
    sent, answer = await asyncio.to_thread(_send_huge_header, port_of(gw), 64 * MB)
    grown = rss_mb() - before
    # Refused long before the end: only what the kernel's buffers held was ever sent.
    assert sent < 16 * MB, sent
    assert answer == b"" or answer.startswith(b"HTTP/1.1 431 "), answer[:100]
    assert grown < 24, f"RSS grew {grown:.0f} MB"  # buffered whole, it grew by 64+ MB
    # A normal request right after is served.
    ok = await asyncio.to_thread(_request, port_of(gw), b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert ok.startswith(b"HTTP/1.1 200 ")


async def test_a_head_just_over_the_cap_gets_431(gw: RunningGateway) -> None:
    head = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"b" * (70 * 1024) + b"\r\n\r\n"
    answer = await asyncio.to_thread(_request, port_of(gw), head)
    assert answer.startswith(b"HTTP/1.1 431 ")
    assert b'"code": "headers_too_large"' in answer


def _request(port: int, raw: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw)
        return _read_all(sock)


def _read_all(sock: socket.socket) -> bytes:
    answer = b""
    try:
        while True:
            data = sock.recv(4096)
            if not data:
                return answer
            answer += data
            if b"\r\n\r\n" in answer and b"connection: close" not in answer.lower():
                return answer  # a keep-alive answer: its head is enough here
    except OSError:
        return answer


def _trickle(port: int) -> bytes:
    """One header byte at a time, forever, until the server gives up on us."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        sock.settimeout(0.05)
        answer = b""
        for _ in range(2000):
            try:
                sock.sendall(b"z")
            except OSError:
                break
            try:
                data = sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                break
            if not data:
                break
            answer += data
        return answer


async def test_a_trickled_header_is_cut_off(gw: RunningGateway) -> None:
    answer = await asyncio.to_thread(_trickle, port_of(gw))
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b'"code": "request_timeout"' in answer


def _idle(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        return sock.recv(4096)  # b"" once the server closes


async def test_an_idle_connection_is_closed_without_an_answer(gw: RunningGateway) -> None:
    assert await asyncio.to_thread(_idle, port_of(gw)) == b""


def _open_served(port: int, n: int) -> list[socket.socket]:
    """n keep-alive connections, each answered once: the server has counted every one."""
    held = []
    for _ in range(n):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert _read_all(sock).startswith(b"HTTP/1.1 200 ")
        held.append(sock)
    return held


async def test_one_address_gets_at_most_its_connections() -> None:
    config = Config.model_validate({"server": {"max_connections_per_address": 5}})
    async with running_gateway(config) as gw:
        port = port_of(gw)
        ws_url = gw.base_url.replace("http", "ws") + "/ws"
        async with connect(ws_url, additional_headers=gw.auth) as ws:
            await ws.send('{"type": "ping"}')
            assert "pong" in str(await ws.recv())  # an upgraded connection holds its slot
            held = await asyncio.to_thread(_open_served, port, 4)
            try:
                refused = await asyncio.to_thread(
                    _request, port, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
                )
                assert refused.startswith(b"HTTP/1.1 429 ")
                assert b"too_many_connections" in refused
                assert b"retry-after: 1" in refused.lower()
            finally:
                for sock in held:
                    sock.close()
        # Closed connections (the WebSocket too) give their slots back.
        for _ in range(100):
            again = await asyncio.to_thread(_open_served_or_none, port, 5)
            if again is not None:
                break
            await asyncio.sleep(0.05)
        assert again is not None
        for sock in again:
            sock.close()


def _open_served_or_none(port: int, n: int) -> list[socket.socket] | None:
    try:
        return _open_served(port, n)
    except AssertionError:
        return None


async def test_trusted_proxies_are_not_counted() -> None:
    config = Config.model_validate(
        {"server": {"max_connections_per_address": 2, "trusted_proxies": ["127.0.0.1"]}}
    )
    async with running_gateway(config) as gw:
        held = await asyncio.to_thread(_open_served, port_of(gw), 6)
        for sock in held:
            sock.close()
