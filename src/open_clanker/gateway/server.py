"""Run the gateway: bind, serve, and on SIGINT/SIGTERM drain in-flight work and exit 0.

uvicorn's own signal capture re-raises the signal after shutdown (a non-zero exit), so the
gateway owns the signals and tells uvicorn to stop instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
from collections.abc import Iterator

import structlog
import uvicorn

from open_clanker.config.model import Config
from open_clanker.core.errors import ConfigError
from open_clanker.gateway.app import create_app
from open_clanker.gateway.runtime import Runtime
from open_clanker.gateway.tokens import resolve_tokens

log = structlog.get_logger("open_clanker.gateway")

WS_MAX_BYTES = 1_048_576 + 1024  # SPEC: frames over 1 MiB close with 1009
DRAIN_TIMEOUT_S = 30


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


def web_chat_link(host: str, port: int, token: str, tls: bool) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    if ":" in shown:
        shown = f"[{shown}]"
    scheme = "https" if tls else "http"
    return f"{scheme}://{shown}:{port}/#token={token}"


async def serve(config: Config, host: str, port: int, tls: bool = False) -> None:
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
    uv_config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        server_header=False,
        proxy_headers=False,
        ws_max_size=WS_MAX_BYTES,
        ws_ping_interval=20,
        ws_ping_timeout=20,
        timeout_graceful_shutdown=DRAIN_TIMEOUT_S,
        lifespan="off",
        **ssl_kwargs,  # type: ignore[arg-type]
    )
    server = _Server(uv_config)
    loop = asyncio.get_running_loop()

    def request_stop(signame: str) -> None:
        if server.should_exit:
            server.force_exit = True
        log.info("shutdown_requested", signal=signame, in_flight=runtime.pipeline.in_flight)
        server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, request_stop, sig.name)
    log.info("gateway_listening", host=host, port=actual_port, tls=tls)
    if tokens.generated:
        # The token rides in the URL fragment: browsers never send it to the server.
        print(
            f"Open the web chat: {web_chat_link(host, actual_port, tokens.values[0], tls)}",
            file=sys.stderr,
            flush=True,
        )
    try:
        await server.serve(sockets=[sock])
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await runtime.stop(DRAIN_TIMEOUT_S)
        sock.close()
