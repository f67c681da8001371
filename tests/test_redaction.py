"""Secrets never reach a log line or a client (issue 13, items 4 and 8): the generated token is
known to the redactor before anything logs, and a provider error that echoes the API key is
redacted in the 502 body, the SSE error event and the WebSocket error frame."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import aiohttp
import pytest
from websockets.asyncio.client import connect

from open_clanker.config.model import Config
from tests.doubles.openai_double import OpenAIDouble, Reply
from tests.harness import running_gateway
from tests.proc import GatewayProcess, clean_env, free_port

API_KEY = "live5f1e9c0d7a3bSECRETfa11"  # no secret shape: only knowing its value hides it


def test_generated_token_is_in_no_log_line_at_debug(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = clean_env(data)  # no token anywhere: the first start generates one
    gw = GatewayProcess(env, tmp_path, free_port(), "-v")
    try:
        gw.wait_healthy()
        token = (data / "gateway.token").read_text().strip()
        asyncio.run(_first_frame_auth(gw.base_url, token))
    finally:
        code, out, err = gw.stop(signal.SIGTERM)
    assert code == 0
    lines = (out + err).splitlines()
    assert any("debug" in line for line in lines)  # debug logging was on
    assert any("TEXT" in line and "[REDACTED]" in line for line in lines)  # the frame logged
    carrying = [line for line in lines if token in line]
    # Only the web chat link the owner is meant to see carries it, in the URL fragment.
    assert carrying == [f"Open the web chat: {gw.base_url}/#token={token}"]


async def _first_frame_auth(base_url: str, token: str) -> None:
    async with connect(base_url.replace("http", "ws") + "/ws") as ws:
        await ws.send(json.dumps({"type": "auth", "token": token}))
        await ws.send(json.dumps({"type": "ping"}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {"type": "pong"}


@pytest.fixture
async def echoing_double(monkeypatch: pytest.MonkeyPatch) -> OpenAIDouble:
    monkeypatch.setenv("LEAKY_PROVIDER_KEY", API_KEY)
    double = OpenAIDouble(api_key=API_KEY)
    double.default = Reply(
        status=400,
        error_type="invalid_request_error",
        error_message=f"Invalid request for key {API_KEY}: model not found.",
    )
    await double.start()
    return double


@pytest.mark.usefixtures("data_dir")
async def test_provider_error_echoing_the_key_is_redacted_for_clients(
    echoing_double: OpenAIDouble,
) -> None:
    config = Config.model_validate(
        {
            "agent": {
                "provider": "openai",
                "base_url": echoing_double.base_url,
                "api_key_env": "LEAKY_PROVIDER_KEY",
                "max_retries": 0,
            },
        }
    )
    try:
        async with running_gateway(config) as gw, aiohttp.ClientSession() as http:
            url = f"{gw.base_url}/api/v1/chat"
            async with http.post(url, json={"text": "hi"}, headers=gw.auth) as r:
                assert r.status == 502
                plain = await r.text()
            async with http.post(url, json={"text": "hi", "stream": True}, headers=gw.auth) as r:
                streamed = await r.text()
            async with connect(
                gw.base_url.replace("http", "ws") + "/ws", additional_headers=gw.auth
            ) as ws:
                await ws.send(json.dumps({"type": "chat", "id": "c1", "text": "hi"}))
                frames = []
                while not frames or frames[-1]["type"] not in ("error", "reply"):
                    frames.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
            completions = f"{gw.base_url}/v1/chat/completions"
            body = {"model": "open-clanker", "messages": [{"role": "user", "content": "hi"}]}
            async with http.post(completions, json=body, headers=gw.auth) as r:
                assert r.status == 502
                openai_plain = await r.text()
            body["stream"] = True
            async with http.post(completions, json=body, headers=gw.auth) as r:
                openai_streamed = await r.text()
    finally:
        await echoing_double.close()
    # The provider did echo the key, and was called with it.
    assert echoing_double.requests
    assert echoing_double.requests[0].headers["authorization"] == f"Bearer {API_KEY}"
    assert json.loads(plain)["error"]["code"] == "provider_error"
    assert "[REDACTED]" in plain and "model not found" in plain
    assert "event: error" in streamed and "[REDACTED]" in streamed
    assert frames[-1]["type"] == "error" and frames[-1]["code"] == "provider_error"
    assert "[REDACTED]" in openai_plain and "[REDACTED]" in openai_streamed
    for shown in (plain, streamed, json.dumps(frames), openai_plain, openai_streamed):
        assert API_KEY not in shown
    assert os.environ["LEAKY_PROVIDER_KEY"] == API_KEY
