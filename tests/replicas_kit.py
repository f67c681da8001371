"""Several real gateway processes on one PostgreSQL database and one Redis, for SPEC §9 tests.

Each test gets a fresh database (created and dropped here) and its own Redis namespace, so
tests never see each other's rows or notices. Replicas log JSON lines to a file each (a pipe
could fill up and stall a busy gateway) and are driven over HTTP with aiohttp.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import pytest

from tests.doubles.telegram_double import TOKEN as TELEGRAM_TOKEN
from tests.proc import clean_env, free_port

PG_URL = os.environ.get("OPENCLAW_TEST_POSTGRES_URL", "")
REDIS_URL = os.environ.get("OPENCLAW_TEST_REDIS_URL", "")
TOKEN = "replica-test-token-0123456789"
LEASE_S = 3.0  # short, so failover tests finish quickly; SPEC bound: lease_s + 15 s
FAILOVER_S = LEASE_S + 15

needs_services = pytest.mark.skipif(
    not (PG_URL and REDIS_URL),
    reason="OPENCLAW_TEST_POSTGRES_URL and OPENCLAW_TEST_REDIS_URL are not set (CI sets them)",
)


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


@contextlib.asynccontextmanager
async def fresh_database() -> AsyncIterator[str]:
    """A new, empty PostgreSQL database on the test server; dropped afterwards."""
    import asyncpg

    name = f"oc_replicas_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(PG_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield _with_database(PG_URL, name)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@dataclass
class ReplicaProcess:
    name: str
    dir: Path
    config: str
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.dir / "gateway.log"

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "config.toml").write_text(self.config, encoding="utf-8")
        env = clean_env(self.dir / "data", **self.extra_env)
        env["OPENCLAW_GATEWAY_TOKEN"] = TOKEN
        env["OPENCLAW_CONFIG"] = str(self.dir / "config.toml")
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "open_clanker", "gateway", "--port", str(self.port)],
            env=env,
            cwd=self.dir,
            stdout=log,
            stderr=log,
        )
        log.close()

    async def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise AssertionError(f"{self.name} exited: {self.log_tail()}")
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with http.get(self.base_url + "/ready") as r:
                        if r.status == 200:
                            return
                await asyncio.sleep(0.1)
        raise AssertionError(f"{self.name} was not ready in time: {self.log_tail()}")

    def kill(self) -> None:
        """kill -9: no shutdown, no release of anything it holds."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return int(self.proc.returncode)

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        out = []
        if not self.log_path.exists():
            return out
        for line in self.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and (name is None or event.get("event") == name):
                out.append(event)
        return out

    def log_tail(self) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return self.log_path.read_text(encoding="utf-8", errors="replace")[-3000:]


def replica_config(
    storage_url: str,
    namespace: str,
    model_url: str,
    *,
    telegram_url: str | None = None,
    extra: str = "",
) -> str:
    telegram = (
        f'[channels.telegram]\nbot_token = "{TELEGRAM_TOKEN}"\napi_base_url = "{telegram_url}"\n'
        if telegram_url
        else ""
    )
    return f"""\
[storage]
url = "{storage_url}"

[bus]
url = "{REDIS_URL}"
namespace = "{namespace}"

[agent]
provider = "openai"
base_url = "{model_url}"
api_key_env = "TEST_MODEL_KEY"
max_retries = 0
timeout_s = 60

[access]
dm_policy = "open"

[limits]
lease_s = {LEASE_S}
messages_per_minute = 1000

[logging]
format = "json"

{telegram}
{extra}
"""


@dataclass
class Cluster:
    replicas: list[ReplicaProcess]
    storage_url: str
    http: aiohttp.ClientSession

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {TOKEN}"}

    async def chat(
        self, replica: ReplicaProcess, text: str, session: str, **headers: str
    ) -> tuple[int, dict[str, Any]]:
        async with self.http.post(
            replica.base_url + "/api/v1/chat",
            json={"text": text, "session": session},
            headers={**self.auth, **headers},
        ) as r:
            return r.status, await r.json()

    async def get(self, replica: ReplicaProcess, path: str) -> dict[str, Any]:
        async with self.http.get(replica.base_url + path, headers=self.auth) as r:
            assert r.status == 200, await r.text()
            body: dict[str, Any] = await r.json()
            return body

    async def history(self, replica: ReplicaProcess, session: str) -> list[dict[str, Any]]:
        body = await self.get(replica, f"/api/v1/sessions/{session}/messages?limit=1000")
        messages: list[dict[str, Any]] = body["messages"]
        return messages


@contextlib.asynccontextmanager
async def cluster(
    tmp_path: Path,
    count: int,
    model_url: str,
    *,
    telegram_url: str | None = None,
    extra: str = "",
    start: bool = True,
) -> AsyncIterator[Cluster]:
    async with fresh_database() as storage_url:
        namespace = f"t{secrets.token_hex(4)}"
        config = replica_config(
            storage_url, namespace, model_url, telegram_url=telegram_url, extra=extra
        )
        replicas = [
            ReplicaProcess(
                name=chr(ord("A") + i),
                dir=tmp_path / f"replica-{i}",
                config=config,
                extra_env={"TEST_MODEL_KEY": "sk-test"},
            )
            for i in range(count)
        ]
        try:
            if start:
                for replica in replicas:
                    replica.start()
                await asyncio.gather(*(r.wait_ready() for r in replicas))
            async with aiohttp.ClientSession() as http:
                yield Cluster(replicas, storage_url, http)
        finally:
            for replica in replicas:
                if replica.proc is not None and replica.proc.poll() is None:
                    replica.stop()


async def eventually(
    check: Callable[[], Any], timeout: float, what: str, every: float = 0.2
) -> Any:
    """Wait until `check()` (sync or async) returns something truthy; returns it."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        await asyncio.sleep(every)


def alternates(history: list[dict[str, Any]]) -> bool:
    roles = [m["role"] for m in history]
    return all(a != b for a, b in itertools.pairwise(roles)) and (not roles or roles[0] == "user")
