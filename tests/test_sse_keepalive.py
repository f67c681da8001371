"""A streamed chat (SSE) sends a comment line while the model is silent, so a proxy's idle
timeout does not cut a model that thinks for a minute before its first token."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from open_clanker.gateway.routes.chat import SSE_KEEPALIVE_S
from tests.doubles.openai_double import OpenAIDouble, Reply
from tests.test_stop import SSEReader
from tests.test_ws import AUTH, run_gateway


async def test_keep_alive_comments_until_the_first_token(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENCLAW_OPENAI_API_KEY", "sk-test")
    think = asyncio.Event()  # the model answers only once the test has seen the keep-alives
    async with OpenAIDouble() as double:
        double.script(Reply(text="Finally, an answer.", hold=think))
        agent = {"provider": "openai", "base_url": double.base_url}
        async with run_gateway(tmp_path, agent=agent) as gw, aiohttp.ClientSession() as http:
            gw.app.state.sse_keepalive_s = 0.05
            body = {"text": "think first", "session": "slow", "stream": True}
            async with http.post(f"{gw.http}/api/v1/chat", json=body, headers=AUTH) as r:
                assert r.headers["Content-Type"].startswith("text/event-stream")
                stream = SSEReader(r)
                assert await stream.next() == ("comment", ": keep-alive")
                assert await stream.next() == ("comment", ": keep-alive")
                think.set()
                while (kind := (await stream.next())[0]) != "done":
                    assert kind in ("delta", "comment")
    deltas = "".join(data["text"] for kind, data in stream.events if kind == "delta")
    assert deltas == "Finally, an answer."
    assert stream.events[-1][1]["reply"]["content"] == "Finally, an answer."


def test_the_default_interval_is_below_common_proxy_timeouts() -> None:
    assert 0 < SSE_KEEPALIVE_S <= 30  # nginx's proxy_read_timeout defaults to 60 s
