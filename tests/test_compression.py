"""gzip through a real server: JSON and the page when the client accepts it, never a stream,
a WebSocket, a small body or with `[server] compression = false`; `HEAD` on every GET route."""

from __future__ import annotations

import gzip
import json
from typing import Any

import aiohttp
import pytest

from open_clanker.config.model import Config
from open_clanker.gateway.compression import accepts_gzip, compressible
from tests.harness import RunningGateway, running_gateway

pytestmark = pytest.mark.usefixtures("data_dir")


@pytest.mark.parametrize(
    ("header", "accepted"),
    [
        ("gzip", True),
        ("GZIP", True),
        ("gzip, deflate, br", True),
        ("deflate, gzip;q=0.5", True),
        ("gzip;q=0", False),
        ("gzip; q=0.000", False),
        ("br, *", True),
        ("*;q=0", False),
        ("gzip;q=0, *", False),  # naming gzip wins over the wildcard
        ("identity", False),
        ("deflate", False),
        ("gzip;q=nonsense", False),
        ("", False),
        (None, False),
    ],
)
def test_accepts_gzip(header: str | None, accepted: bool) -> None:
    assert accepts_gzip(header) is accepted


@pytest.mark.parametrize(
    ("headers", "status", "ok"),
    [
        ([(b"content-type", b"application/json")], 200, True),
        ([(b"content-type", b"text/html; charset=utf-8")], 200, True),
        ([(b"content-type", b"text/event-stream")], 200, False),
        ([(b"content-type", b"image/png")], 200, False),
        ([(b"content-type", b"application/json"), (b"content-encoding", b"br")], 200, False),
        ([(b"content-type", b"application/json"), (b"cache-control", b"no-transform")], 200, False),
        ([(b"content-type", b"application/json")], 204, False),
        ([(b"content-type", b"application/json")], 304, False),
        ([], 200, False),
    ],
)
def test_compressible(headers: list[tuple[bytes, bytes]], status: int, ok: bool) -> None:
    assert compressible(headers, status) is ok


async def get_raw(
    http: aiohttp.ClientSession, gw: RunningGateway, path: str, encoding: str | None
) -> tuple[int, Any, bytes]:
    headers = dict(gw.auth)
    if encoding is not None:
        headers["Accept-Encoding"] = encoding
    async with http.get(f"{gw.base_url}{path}", headers=headers) as r:
        return r.status, r.headers, await r.read()


async def test_gzip_on_json_and_page_never_on_streams() -> None:
    async with (
        running_gateway() as gw,
        aiohttp.ClientSession(auto_decompress=False) as http,
    ):
        status, plain_headers, plain = await get_raw(http, gw, "/openapi.json", "identity")
        assert status == 200 and "Content-Encoding" not in plain_headers
        assert len(plain) > 1024
        status, headers, packed = await get_raw(http, gw, "/openapi.json", "gzip, deflate")
        assert status == 200
        assert headers["Content-Encoding"] == "gzip"
        assert "Accept-Encoding" in headers["Vary"]
        assert int(headers["Content-Length"]) == len(packed) < len(plain)
        assert json.loads(gzip.decompress(packed)) == json.loads(plain)
        # The web chat page (and its script) too.
        status, headers, page = await get_raw(http, gw, "/", "gzip")
        assert status == 200 and headers["Content-Encoding"] == "gzip"
        assert b"<html" in gzip.decompress(page).lower()
        # Too small to be worth it, or refused by the client.
        _, headers, body = await get_raw(http, gw, "/health", "gzip")
        assert "Content-Encoding" not in headers and body == b"OK"
        _, headers, _ = await get_raw(http, gw, "/openapi.json", "gzip;q=0")
        assert "Content-Encoding" not in headers
        # Server-sent events: never compressed (a proxy or client would hold the deltas back).
        body_json = {"text": "stream me " * 200, "session": "z", "stream": True}
        headers = {**gw.auth, "Accept-Encoding": "gzip"}
        async with http.post(f"{gw.base_url}/api/v1/chat", json=body_json, headers=headers) as r:
            assert r.status == 200
            assert r.headers["Content-Type"].startswith("text/event-stream")
            assert "Content-Encoding" not in r.headers
            raw = await r.read()
        assert raw.startswith(b"event: ") and b"event: done" in raw
        # A large JSON answer is compressed.
        body_json["stream"] = False
        async with http.post(f"{gw.base_url}/api/v1/chat", json=body_json, headers=headers) as r:
            assert r.status == 200 and r.headers["Content-Encoding"] == "gzip"
            answer = json.loads(gzip.decompress(await r.read()))
        assert "stream me" in answer["reply"]["content"]
        # A WebSocket asked with gzip accepted works as ever (frames are not HTTP bodies).
        async with http.ws_connect(f"{gw.base_url}/ws", headers=headers) as ws:
            await ws.send_json({"type": "ping"})
            assert (await ws.receive_json(timeout=10))["type"] == "pong"


async def test_compression_off() -> None:
    config = Config.model_validate({"server": {"compression": False}})
    async with (
        running_gateway(config) as gw,
        aiohttp.ClientSession(auto_decompress=False) as http,
    ):
        status, headers, body = await get_raw(http, gw, "/openapi.json", "gzip")
        assert status == 200 and "Content-Encoding" not in headers
        assert json.loads(body)["openapi"].startswith("3.")


@pytest.mark.parametrize("path", ["/health", "/ready", "/api/v1/status", "/openapi.json", "/"])
async def test_head_on_get_routes(path: str) -> None:
    async with running_gateway() as gw, aiohttp.ClientSession(auto_decompress=False) as http:
        async with http.get(f"{gw.base_url}{path}", headers=gw.auth) as r:
            assert r.status == 200
            got = await r.read()
        async with http.head(f"{gw.base_url}{path}", headers=gw.auth) as r:
            assert r.status == 200
            assert r.headers["Content-Type"]
            if "Content-Length" in r.headers and path != "/api/v1/status":  # uptime changes
                assert int(r.headers["Content-Length"]) == len(got)
            assert await r.read() == b""
        # HEAD on a POST-only route is still not allowed.
        async with http.head(f"{gw.base_url}/api/v1/chat", headers=gw.auth) as r:
            assert r.status == 405
