"""Auth lockout, body limits, proxies, CORS, metrics and TLS through a real server."""

from __future__ import annotations

import asyncio
import io
import shutil
import ssl
import subprocess
import urllib.request
from pathlib import Path

import aiohttp
import pytest

from open_clanker.config.model import Config
from open_clanker.gateway.client_ip import client_ip
from tests.harness import running_gateway
from tests.proc import GatewayProcess, clean_env, free_port

pytestmark = pytest.mark.usefixtures("data_dir")


@pytest.mark.parametrize(
    ("peer", "xff", "trusted", "expected"),
    [
        ("1.2.3.4", "9.9.9.9", [], "1.2.3.4"),  # no trusted proxies: header ignored
        ("10.0.0.1", "9.9.9.9", ["10.0.0.0/8"], "9.9.9.9"),
        ("10.0.0.1", "6.6.6.6, 9.9.9.9, 10.0.0.2", ["10.0.0.0/8"], "9.9.9.9"),
        ("1.2.3.4", "9.9.9.9", ["10.0.0.0/8"], "1.2.3.4"),  # untrusted peer can't spoof
        ("10.0.0.1", None, ["10.0.0.0/8"], "10.0.0.1"),
        # Every header line counts: a proxy that adds its own line is read to its end.
        ("10.0.0.1", ["6.6.6.6", "9.9.9.9"], ["10.0.0.0/8"], "9.9.9.9"),
        ("10.0.0.1", ["1.1.1.1, 6.6.6.6", "9.9.9.9, 10.0.0.3"], ["10.0.0.0/8"], "9.9.9.9"),
        ("10.0.0.1", ["10.0.0.5", "10.0.0.6"], ["10.0.0.0/8"], "10.0.0.5"),  # all proxies
        ("10.0.0.1", ["9.9.9.9:4711"], ["10.0.0.0/8"], "9.9.9.9"),  # a port some proxies add
        ("10.0.0.1", ["[2001:db8::1]:443"], ["10.0.0.0/8"], "2001:db8::1"),
        ("10.0.0.1", [], ["10.0.0.0/8"], "10.0.0.1"),
    ],
)
def test_client_ip(
    peer: str, xff: str | list[str] | None, trusted: list[str], expected: str
) -> None:
    assert client_ip(peer, xff, trusted) == expected


async def test_lockout_through_the_api() -> None:
    async with running_gateway() as gw, aiohttp.ClientSession() as http:
        bad = {"Authorization": "Bearer nope"}
        for _ in range(10):
            async with http.get(f"{gw.base_url}/api/v1/status", headers=bad) as r:
                assert r.status == 401
        async with http.get(f"{gw.base_url}/api/v1/status", headers=gw.auth) as r:
            assert r.status == 429  # even the right token, from this address, for a while
            assert int(r.headers["Retry-After"]) > 200


async def test_body_size_cap() -> None:
    async with running_gateway() as gw, aiohttp.ClientSession() as http:
        huge = b'{"text": "' + b"x" * 2_000_000 + b'"}'
        async with http.post(
            f"{gw.base_url}/api/v1/chat", data=io.BytesIO(huge), headers=gw.auth
        ) as r:
            assert r.status == 413
            assert (await r.json())["error"]["code"] == "request_too_large"

        async def chunks():  # no Content-Length: counted as it streams in
            for _ in range(40):
                yield b"x" * 65536

        async with http.post(f"{gw.base_url}/api/v1/chat", data=chunks(), headers=gw.auth) as r:
            assert r.status == 413


async def test_metrics_count_messages_and_tokens() -> None:
    async with running_gateway() as gw, aiohttp.ClientSession() as http:
        async with http.get(f"{gw.base_url}/metrics") as r:
            assert r.status == 401
        for _ in range(2):
            async with http.post(
                f"{gw.base_url}/api/v1/chat", json={"text": "count me"}, headers=gw.auth
            ) as r:
                assert r.status == 200
        async with http.get(f"{gw.base_url}/metrics", headers=gw.auth) as r:
            text = await r.text()
    assert 'clanker_messages_in_total{channel="api"} 2.0' in text
    assert 'clanker_messages_out_total{channel="api"} 2.0' in text
    assert 'clanker_reply_latency_seconds_count{model="echo",provider="echo"} 2.0' in text
    assert 'clanker_provider_tokens_total{direction="output",model="echo",provider="echo"}' in text
    assert "clanker_websocket_connections" in text


async def test_cors_only_for_configured_origins() -> None:
    config = Config.model_validate({"server": {"cors_origins": ["http://good.example"]}})
    async with running_gateway(config) as gw, aiohttp.ClientSession() as http:
        for origin, allowed in (("http://good.example", True), ("http://evil.example", False)):
            headers = {
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            }
            async with http.options(f"{gw.base_url}/api/v1/chat", headers=headers) as r:
                got = r.headers.get("Access-Control-Allow-Origin")
            assert (got == origin) is allowed


async def test_no_cors_headers_by_default() -> None:
    async with running_gateway() as gw, aiohttp.ClientSession() as http:
        headers = {**gw.auth, "Origin": "http://evil.example"}
        async with http.get(f"{gw.base_url}/api/v1/status", headers=headers) as r:
            assert "Access-Control-Allow-Origin" not in r.headers


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_tls(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    (tmp_path / "config.toml").write_text(
        f'[server.tls]\ncert_path = "{cert}"\nkey_path = "{key}"\n'
    )
    port = free_port()
    gw = GatewayProcess(clean_env(tmp_path / "data"), tmp_path, port, "--tls")
    gw.base_url = f"https://127.0.0.1:{port}"
    ctx = ssl.create_default_context(cafile=str(cert))
    ctx.check_hostname = False
    try:
        for _ in range(200):
            try:
                with urllib.request.urlopen(f"{gw.base_url}/health", context=ctx, timeout=1) as r:
                    assert r.read() == b"OK"
                    break
            except OSError:
                if gw.proc.poll() is not None:
                    raise AssertionError(gw.proc.communicate()[1]) from None
                asyncio.run(asyncio.sleep(0.05))
        else:
            raise AssertionError("TLS gateway did not answer")
    finally:
        code, _out, err = gw.stop()
    assert code == 0
    assert "https://127.0.0.1" in err  # the printed link uses the right scheme
