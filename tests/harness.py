"""Run the real gateway (Runtime + FastAPI app + uvicorn) on a loopback port inside a test."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import uvicorn
from fastapi import FastAPI

from open_clanker.config.model import Config
from open_clanker.gateway.app import create_app
from open_clanker.gateway.runtime import Runtime
from open_clanker.gateway.server import WS_MAX_BYTES, bind_socket, guarded_protocols
from open_clanker.gateway.tokens import Tokens

TEST_TOKEN = "test-token-0123456789abcdef"


@dataclass
class RunningGateway:
    base_url: str
    token: str
    runtime: Runtime
    app: FastAPI

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


class _QuietServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[no-untyped-def]
        yield


@contextlib.asynccontextmanager
async def running_gateway(
    config: Config | None = None,
    token: str = TEST_TOKEN,
    protocols: dict[str, Any] | None = None,
) -> AsyncIterator[RunningGateway]:
    """`protocols`: uvicorn's `http`/`ws` classes; by default the gateway's own."""
    config = config or Config()
    runtime = await Runtime.start(config, Tokens((token,), generated=False))
    app = create_app(runtime)
    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = _QuietServer(
        uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            lifespan="off",
            ws_max_size=WS_MAX_BYTES,
            **(protocols or guarded_protocols(config)),
        )
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield RunningGateway(f"http://127.0.0.1:{port}", token, runtime, app)
    finally:
        server.should_exit = True
        await task
        await runtime.stop(5)
        sock.close()


async def settled(gw: RunningGateway) -> None:
    """Wait until no message is in the pipeline and nothing is waiting in the outbox."""
    for _ in range(1000):
        pending = await gw.runtime.store.outbox.count("pending")
        if gw.runtime.pipeline.in_flight == 0 and pending == 0:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the gateway did not settle")
