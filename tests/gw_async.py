"""Drive a real gateway process from an async test, while loopback doubles serve in the test's
own event loop (so every blocking wait runs in a thread)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from tests.proc import GatewayProcess, free_port

TOKEN = "gwtok-test-0123456789abcdef"


async def start_gateway(env: dict[str, str], cwd: Path, *extra: str) -> GatewayProcess:
    gw = GatewayProcess(env, cwd, free_port(), *extra)
    try:
        await asyncio.to_thread(gw.wait_healthy, 30)
    except BaseException:
        kill(gw)
        raise
    return gw


def kill(gw: GatewayProcess) -> None:
    if gw.proc.poll() is None:
        gw.proc.kill()
    with contextlib.suppress(Exception):
        gw.proc.communicate(timeout=10)


async def signal_and_wait(gw: GatewayProcess, timeout: float = 60) -> tuple[int, str, str]:
    """SIGTERM, then the exit code and output (the process is killed if it overstays)."""
    gw.proc.send_signal(signal.SIGTERM)
    return await exited(gw, timeout)


async def exited(gw: GatewayProcess, timeout: float = 60) -> tuple[int, str, str]:
    try:
        out, err = await asyncio.to_thread(gw.proc.communicate, None, timeout)
    except BaseException:
        kill(gw)
        raise
    return gw.proc.returncode, out, err


async def until(predicate: Callable[[], bool], what: str, timeout: float = 20) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"timed out waiting until {what}") from None


async def ready_body(http: aiohttp.ClientSession, gw: GatewayProcess) -> tuple[int, Any]:
    async with http.get(f"{gw.base_url}/ready") as r:
        return r.status, await r.json()


async def until_ready_says(
    http: aiohttp.ClientSession,
    gw: GatewayProcess,
    check: Callable[[int, Any], bool],
    timeout: float = 20,
) -> Any:
    async with asyncio.timeout(timeout):
        while True:
            status, body = await ready_body(http, gw)
            if check(status, body):
                return body
            await asyncio.sleep(0.02)


async def post_chat(
    http: aiohttp.ClientSession, gw: GatewayProcess, text: str, session: str = "s", **extra: Any
) -> tuple[int, Any, str]:
    """(status, JSON body, X-Request-ID) of POST /api/v1/chat."""
    async with http.post(
        f"{gw.base_url}/api/v1/chat",
        json={"text": text, "session": session, **extra},
        headers={"Authorization": f"Bearer {TOKEN}"},
    ) as r:
        return r.status, await r.json(), r.headers.get("x-request-id", "")


async def session_messages(
    http: aiohttp.ClientSession, gw: GatewayProcess, session: str
) -> list[dict[str, Any]]:
    async with http.get(
        f"{gw.base_url}/api/v1/sessions/{session}/messages",
        headers={"Authorization": f"Bearer {TOKEN}"},
    ) as r:
        if r.status == 404:
            return []
        body = await r.json()
    messages: list[dict[str, Any]] = body["messages"]
    return messages


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every non-empty line parsed as one JSON object (fails on a line that is not)."""
    lines = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            parsed = json.loads(line)
        except ValueError:
            raise AssertionError(f"not a JSON log line: {line[:300]!r}") from None
        assert isinstance(parsed, dict), line
        lines.append(parsed)
    return lines


def events(text: str) -> list[str]:
    return [line["event"] for line in json_lines(text)]
