"""Run the gateway: bind, serve, and on SIGINT/SIGTERM shut down in order and exit 0.

The order (each step bounded): refuse new work and stop push channels receiving → let in-flight
turns finish while HTTP still answers (their clients get the reply; new requests get 503) →
stop the HTTP server → deliver the outbox once more → close channels, bus, HTTP client and
storage. A second signal exits at once.

uvicorn's own signal capture re-raises the signal after shutdown (a non-zero exit), so the
gateway owns the signals and tells uvicorn to stop instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import structlog
import uvicorn

from open_clanker.config.loader import LoadedConfig
from open_clanker.config.model import Config
from open_clanker.core.errors import ConfigError
from open_clanker.core.startup_heap import settle_heap
from open_clanker.gateway.app import create_app
from open_clanker.gateway.http_protocol import ConnectionLimits, protocol_classes
from open_clanker.gateway.reload import Reloader, ReloadOnSignal
from open_clanker.gateway.runtime import Runtime
from open_clanker.gateway.tokens import resolve_tokens

log = structlog.get_logger("open_clanker.gateway")

WS_MAX_BYTES = 1_048_576 + 1024  # SPEC: frames over 1 MiB close with 1009
# uvicorn pings every WebSocket this often and closes one whose pong is this late (1011): a
# peer gone without a FIN is noticed, and idle proxies see traffic.
WS_PING_INTERVAL_S = 20.0
WS_PING_TIMEOUT_S = 20.0
DRAIN_TIMEOUT_S = 30  # in-flight turns finish within this after SIGTERM
HTTP_GRACE_S = 5  # then open HTTP responses and WebSockets get this long to finish


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted sockets only when the
    # listener says it is TCP. Without it every answer waited 40 ms on a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    # SO_REUSEADDR: a restart never fails on a port left in TIME_WAIT.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"Cannot listen on {host}:{port}: {exc.strerror}.") from None
    sock.set_inheritable(True)
    return sock


def guarded_protocols(config: Config) -> dict[str, Any]:
    """uvicorn's `http` and `ws` protocol classes with the gateway's bounds on request heads
    and connections per address (`http_protocol.py`)."""
    limits = ConnectionLimits(
        per_address=config.server.max_connections_per_address,
        exempt=tuple(config.server.trusted_proxies),
    )
    http, ws = protocol_classes(limits)
    return {"http": http, "ws": ws}


def web_chat_link(host: str, port: int, token: str, tls: bool) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    if ":" in shown:
        shown = f"[{shown}]"
    scheme = "https" if tls else "http"
    return f"{scheme}://{shown}:{port}/#token={token}"


def print_web_chat_link(link: str, fmt: str) -> None:
    """Printed, not logged: the redactor would hide the token, and the link is for the person
    starting the gateway. In JSON mode it is one JSON line like every other."""
    if fmt == "json":
        now = datetime.now(UTC).isoformat()
        text = json.dumps(
            {"event": "web_chat_link", "url": link, "level": "info", "timestamp": now}
        )
    else:
        text = f"Open the web chat: {link}"
    print(text, file=sys.stderr, flush=True)


def _exit_now(code: int) -> None:
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stderr.flush()
    os._exit(code)


async def serve(
    config: Config,
    host: str,
    port: int,
    tls: bool = False,
    load: Callable[[], LoadedConfig] | None = None,
    verbose: bool = False,
) -> None:
    """`load` re-reads the config for a reload (SIGHUP, `POST /api/v1/reload`)."""
    tokens = resolve_tokens(config, host)
    ssl_kwargs: dict[str, str] = {}
    if tls:
        tls_cfg = config.server.tls
        if tls_cfg is None or not tls_cfg.cert_path:
            raise ConfigError("--tls needs [server.tls] cert_path and key_path in the config.")
        ssl_kwargs = {"ssl_certfile": tls_cfg.cert_path, "ssl_keyfile": tls_cfg.key_path}
    sock = bind_socket(host, port)
    actual_port = sock.getsockname()[1]
    runtime = await Runtime.start(config, tokens)
    app = create_app(runtime, bind_host=host)
    reloader = Reloader(runtime, load or (lambda: LoadedConfig(config, None)), host, verbose)
    app.state.reloader = reloader
    uv_config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        server_header=False,
        proxy_headers=False,
        ws_max_size=WS_MAX_BYTES,
        **guarded_protocols(config),
        ws_ping_interval=WS_PING_INTERVAL_S,
        ws_ping_timeout=WS_PING_TIMEOUT_S,
        timeout_graceful_shutdown=HTTP_GRACE_S,
        lifespan="off",
        **ssl_kwargs,  # type: ignore[arg-type]
    )
    server = _Server(uv_config)
    settle_heap()  # the start's objects: collected once, then frozen (core/startup_heap.py)
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()
    drain_until: float | None = None  # one drain bound for the whole shutdown

    def on_signal(sig: signal.Signals) -> None:
        if stop_requested.is_set():
            # Nothing is lost by leaving now: every accepted message was stored (pending)
            # before its model call and is answered by recovery at the next start, and stored
            # replies wait in the outbox. SQLite in WAL mode survives a process exit.
            log.warning("shutdown_forced", signal=sig.name, in_flight=runtime.pipeline.in_flight)
            _exit_now(128 + sig.value)
        log.info("shutdown_requested", signal=sig.name, in_flight=runtime.pipeline.in_flight)
        stop_requested.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    reloads = ReloadOnSignal(reloader)
    loop.add_signal_handler(signal.SIGHUP, reloads.trigger)
    try:
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        log.info("gateway_listening", host=host, port=actual_port, tls=tls)
        if tokens.generated:
            # The token rides in the URL fragment: browsers never send it to the server.
            link = web_chat_link(host, actual_port, tokens.values[0], tls)
            print_web_chat_link(link, config.logging.format)
        signalled = asyncio.create_task(stop_requested.wait())
        await asyncio.wait({serving, signalled}, return_when=asyncio.FIRST_COMPLETED)
        signalled.cancel()
        if stop_requested.is_set():
            # HTTP keeps answering while in-flight turns finish, so their clients get the
            # reply; new work is refused with 503 and /ready says not_ready meanwhile.
            drain_until = loop.time() + DRAIN_TIMEOUT_S
            await runtime.begin_shutdown()
            await runtime.drain(DRAIN_TIMEOUT_S)
            server.should_exit = True
        await serving
        log.info("http_stopped")
    finally:
        # Signal handlers stay until here: a second signal during any step exits at once.
        left = DRAIN_TIMEOUT_S if drain_until is None else max(drain_until - loop.time(), 0.0)
        await runtime.stop(left)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        await reloads.wait()
        sock.close()
