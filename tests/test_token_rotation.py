"""`open-clanker token rotate` against running gateways: a new token accepted at once, older
ones valid for the grace period and refused after it without a restart, tokens stored only
as hashes, `token list` never showing one; across replicas sharing PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from open_clanker.gateway.token_ring import RotatedTokens, token_hash
from tests.doubles.echo_model import EchoModel
from tests.gw_async import exited, kill, start_gateway
from tests.proc import GatewayProcess, clean_env, cli
from tests.replicas_kit import TOKEN as CONFIGURED
from tests.replicas_kit import cluster, eventually, needs_services


class _Stored:
    def __init__(self, token: str, expires_at: float | None) -> None:
        self.token_hash = token_hash(token)
        self.expires_at = expires_at


def test_rotated_tokens_check_by_hash_and_expiry() -> None:
    now = [1000.0]
    ring = RotatedTokens(clock=lambda: now[0])
    ring.replace([_Stored("a" * 43, None), _Stored("b" * 43, 1010.0)])
    table = [("a" * 43, True), ("b" * 43, True), ("c" * 43, False), ("", False)]
    for token, ok in table:
        assert ring.check(token) is ok, token
    now[0] = 1010.0  # expiry is exclusive: at that second the token is no longer valid
    assert ring.check("a" * 43) and not ring.check("b" * 43)


async def code_of(http: aiohttp.ClientSession, base_url: str, token: str) -> int:
    async with http.get(
        f"{base_url}/api/v1/status", headers={"Authorization": f"Bearer {token}"}
    ) as r:
        return r.status


def run_cli(gw: GatewayProcess, env: dict[str, str], cwd: Path, *args: str) -> Any:
    return cli(list(args), {**env, "OPENCLAW_GATEWAY_URL": gw.base_url}, cwd)


async def test_rotate_with_the_generated_token(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = clean_env(data)
    token_file = data / "gateway.token"
    gw = await start_gateway(env, tmp_path)
    try:
        first = token_file.read_text().strip()
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(
                f"{gw.base_url}/ws", headers={"Authorization": f"Bearer {first}"}
            )
            result = await asyncio.to_thread(
                run_cli, gw, env, tmp_path, "token", "rotate", "--grace", "0", "--json"
            )
            assert result.returncode == 0, result.stderr
            rotated = json.loads(result.stdout)
            second = rotated["token"]
            assert rotated["id"].startswith("tok_") and rotated["token_file_updated"] is True
            # The CLI's file follows the newest token; the old one is refused at once (grace 0).
            assert token_file.read_text().strip() == second
            assert await code_of(http, gw.base_url, second) == 200
            assert await code_of(http, gw.base_url, first) == 401
            # A WebSocket authenticated before the rotation stays open.
            await ws.send_json({"type": "ping"})
            assert (await ws.receive_json(timeout=10))["type"] == "pong"
            await ws.close()

            # Human output: the token alone on stdout, the explanation on stderr.
            result = await asyncio.to_thread(
                run_cli, gw, env, tmp_path, "token", "rotate", "--grace", "1h"
            )
            assert result.returncode == 0, result.stderr
            third = result.stdout.strip()
            assert len(result.stdout.splitlines()) == 1 and len(third) >= 40
            assert "shown only now" in result.stderr and third not in result.stderr
            assert await code_of(http, gw.base_url, second) == 200  # within its grace period
            assert await code_of(http, gw.base_url, third) == 200

            listed = await asyncio.to_thread(run_cli, gw, env, tmp_path, "token", "list", "--json")
            assert listed.returncode == 0, listed.stderr
            tokens = json.loads(listed.stdout)["tokens"]
            assert [t["origin"] for t in tokens] == ["generated", "rotated", "rotated"]
            assert [t["state"] for t in tokens] == ["expired", "expiring", "active"]
            table = await asyncio.to_thread(run_cli, gw, env, tmp_path, "token", "list")
            for secret in (first, second, third):
                for text in (listed.stdout, table.stdout, table.stderr):
                    assert secret not in text and token_hash(secret) not in text

            # Wrong input: one line, no request made.
            bad = await asyncio.to_thread(
                run_cli, gw, env, tmp_path, "token", "rotate", "--grace", "soon"
            )
            assert bad.returncode == 1 and bad.stderr.count("\n") == 1
            assert "24h" in bad.stderr
        gw.proc.send_signal(15)
        code, _out, err = await exited(gw)
        assert code == 0, err[-2000:]
        for secret in (second, third):  # the first was printed once, in the web chat link
            assert secret not in err

        # At rest: hashes only, in the database; the file holds the newest token for the CLI.
        rows = sqlite3.connect(data / "open-clanker.db").execute(
            "SELECT token_hash FROM gateway_tokens"
        )
        hashes = {row[0] for row in rows}
        assert hashes == {token_hash(t) for t in (first, second, third)}
        raw = (data / "open-clanker.db").read_bytes()
        assert all(t.encode() not in raw for t in (second, third))

        # After a restart: the stored tokens are accepted from the first request; and the
        # one rotated out with a one-second grace stops working without another restart.
        gw = await start_gateway(env, tmp_path)
        async with aiohttp.ClientSession() as http:
            assert await code_of(http, gw.base_url, second) == 200
            assert await code_of(http, gw.base_url, third) == 200
            assert await code_of(http, gw.base_url, first) == 401
            result = await asyncio.to_thread(
                run_cli, gw, env, tmp_path, "token", "rotate", "--grace", "1s", "--json"
            )
            fourth = json.loads(result.stdout)["token"]
            assert await code_of(http, gw.base_url, fourth) == 200

            async def refused(token: str) -> bool:
                return await code_of(http, gw.base_url, token) == 401

            await eventually(lambda: refused(third), 20, "the old token expired")
            assert await code_of(http, gw.base_url, fourth) == 200
    finally:
        kill(gw)


@pytest.mark.postgres
@pytest.mark.redis
@needs_services
async def test_rotation_reaches_every_replica(tmp_path: Path) -> None:
    model = EchoModel()
    await model.start()
    try:
        await rotate_on_one_accepted_on_both(tmp_path, model.base_url)
    finally:
        await model.stop()


async def rotate_on_one_accepted_on_both(tmp_path: Path, model_url: str) -> None:
    async with cluster(tmp_path, 2, model_url) as c:
        a, b = c.replicas
        env = clean_env(tmp_path / "cli", OPENCLAW_GATEWAY_TOKEN=CONFIGURED)
        env["OPENCLAW_GATEWAY_URL"] = a.base_url
        result = await asyncio.to_thread(
            cli, ["token", "rotate", "--grace", "0", "--json"], env, tmp_path
        )
        assert result.returncode == 0, result.stderr
        rotated = json.loads(result.stdout)
        assert rotated["token_file_updated"] is False  # configured tokens: no file involved
        new = rotated["token"]
        assert await code_of(c.http, a.base_url, new) == 200
        # B learns of it through the bus (or its periodic refresh), without a restart.
        await eventually(lambda: b.events("tokens_loaded"), 20, "B loaded the new token")
        assert await code_of(c.http, b.base_url, new) == 200
        # Configured tokens are not rotated away: they go when they leave the config.
        assert await code_of(c.http, b.base_url, CONFIGURED) == 200
        env["OPENCLAW_GATEWAY_URL"] = b.base_url
        listed = await asyncio.to_thread(cli, ["token", "list", "--json"], env, tmp_path)
        body = json.loads(listed.stdout)
        assert body["configured"] == 1 and [t["state"] for t in body["tokens"]] == ["active"]
