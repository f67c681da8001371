"""The auth lockout through the real server (issue 13): an attempt is counted before its answer
(item 6), every X-Forwarded-For line is read (item 7), and the table stays bounded without
forgetting who is locked out (item 15)."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
from multidict import CIMultiDict
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from open_clanker.config.model import Config
from open_clanker.gateway.lockout import MAX_FAILURES, AuthLockout
from open_clanker.pipeline.counters import MemoryCounters
from tests.harness import RunningGateway, running_gateway

pytestmark = pytest.mark.usefixtures("data_dir")

BEHIND_PROXY = Config.model_validate({"server": {"trusted_proxies": ["127.0.0.1"]}})


async def _guess(url: str, token: str) -> str:
    """Open a WebSocket, authenticate by first frame; what the gateway answered."""
    try:
        async with connect(url, open_timeout=30) as ws:
            await ws.send(json.dumps({"type": "auth", "token": token}))
            try:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 30))
            except ConnectionClosed:
                return "closed"
            return str(frame.get("code") or frame.get("type"))
    except InvalidStatus as refused:
        return f"http {refused.response.status_code}"


async def test_150_websockets_at_once_get_ten_answers_to_their_guesses() -> None:
    async with running_gateway() as gw:
        url = gw.base_url.replace("http", "ws") + "/ws"
        answers = await asyncio.gather(*(_guess(url, f"guess-{i}") for i in range(150)))
        assert answers.count("unauthorized") == MAX_FAILURES, answers
        # Every other guess was refused without being answered: locked out, in a frame or at
        # the upgrade once the lockout was in place.
        assert set(answers) - {"unauthorized"} <= {"rate_limited", "http 429"}
        # The owner's token from that address is refused too, for minutes.
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{gw.base_url}/api/v1/status", headers=gw.auth) as r,
        ):
            assert r.status == 429


def _forwarded(*lines: str, token: str) -> CIMultiDict[str]:
    headers: CIMultiDict[str] = CIMultiDict({"Authorization": f"Bearer {token}"})
    for line in lines:
        headers.add("X-Forwarded-For", line)
    return headers


async def _status(
    http: aiohttp.ClientSession, gw: RunningGateway, headers: CIMultiDict[str]
) -> int:
    async with http.get(f"{gw.base_url}/api/v1/status", headers=headers) as r:
        return r.status


async def test_every_forwarded_for_line_is_read() -> None:
    """The proxy (127.0.0.1, trusted) adds its own header line with the real client address;
    the client's own line cannot lock someone else out, nor hide the client."""
    attacker, victim = "198.51.100.7", "203.0.113.99"
    async with running_gateway(BEHIND_PROXY) as gw, aiohttp.ClientSession() as http:
        for _ in range(MAX_FAILURES):
            forged = _forwarded(victim, attacker, token="wrong-guess")
            assert await _status(http, gw, forged) == 401
        assert await _status(http, gw, _forwarded(victim, token=gw.token)) == 200
        assert await _status(http, gw, _forwarded("10.9.9.9", attacker, token=gw.token)) == 429
        assert await _status(http, gw, _forwarded(f"{attacker}, 127.0.0.1", token=gw.token)) == 429


async def test_a_spray_of_addresses_keeps_the_table_bounded_and_the_lockout() -> None:
    async with running_gateway(BEHIND_PROXY) as gw, aiohttp.ClientSession() as http:
        counters = MemoryCounters(100)
        gw.runtime.lockout = AuthLockout(counters)  # the same lockout, a smaller table
        for _ in range(MAX_FAILURES):
            await _status(http, gw, _forwarded("192.0.2.1", token="wrong"))
        for i in range(300):
            await _status(http, gw, _forwarded(f"10.1.{i // 250}.{i % 250}", token="wrong"))
            assert len(counters) <= 100
        assert await _status(http, gw, _forwarded("192.0.2.1", token=gw.token)) == 429
        assert await _status(http, gw, _forwarded("192.0.2.2", token=gw.token)) == 200
