"""The `open-clanker` command line. Heavy imports live inside commands: `--help` stays fast."""

from __future__ import annotations

import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any

import typer

from open_clanker import __version__
from open_clanker.cli.ops_cmds import (
    GatewayOpt,
    call_gateway,
    pairing_app,
    reload_command,
    token_app,
)
from open_clanker.cli.output import JsonOpt, emit, fail, json_mode, no_color
from open_clanker.cli.state import load as _load
from open_clanker.cli.state import state

app = typer.Typer(
    name="open-clanker",
    help="Open Clanker: a small, fast, self-hosted AI assistant gateway.",
    no_args_is_help=True,
    rich_markup_mode=None,  # plain help, no rich import: cli/help_style.py
    add_completion=True,  # --install-completion / --show-completion (bash, zsh, fish, …)
    pretty_exceptions_enable=False,
)
app.add_typer(pairing_app, name="pairing")
app.add_typer(token_app, name="token")
app.command("reload")(reload_command)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"open-clanker {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="Debug logging.")] = False,
    config: Annotated[
        str | None, typer.Option("-c", "--config", help="Config file path.", show_default=False)
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    state.verbose = verbose
    state.config_path = config


@app.command()
def gateway(
    host: Annotated[str | None, typer.Option(help="Address to bind (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 18789).")] = None,
    tls: Annotated[bool, typer.Option("--tls", help="Serve HTTPS with [server.tls].")] = False,
) -> None:
    """Run the gateway until SIGINT/SIGTERM, then drain in-flight work and exit 0."""
    import os

    from open_clanker.cli.lean_imports import keep_rich_out
    from open_clanker.core.startup_heap import pause_collector

    pause_collector()  # until the app is built (server.serve settles the heap)
    keep_rich_out()

    from open_clanker.config.loader import load_config
    from open_clanker.core.errors import ClankerError
    from open_clanker.core.logging import REDACTOR, resolve_level, setup_logging
    from open_clanker.gateway.secrets import secret_values

    loaded = _load()
    config = loaded.config
    # Before logging starts: no line, not even the first, may carry a secret.
    REDACTOR.add(secret_values(config, os.environ))
    try:
        level = resolve_level(state.verbose, os.environ.get("OPENCLAW_LOG"), config.logging.level)
        setup_logging(level, config.logging.format, config.logging.file)
    except ClankerError as exc:
        fail(exc.message)
    import structlog

    from open_clanker.config.paths import data_dir
    from open_clanker.core.file_modes import PRIVATE_DIR, tighten

    # Whatever the gateway or its libraries create (database, WAL, logs) is the owner's alone.
    os.umask(0o077)
    tighten(data_dir(), PRIVATE_DIR)
    log = structlog.get_logger("open_clanker")
    for warning in loaded.warnings:
        log.warning("config_key_renamed", detail=warning)
    log.info("config_loaded", path=str(loaded.path) if loaded.path else "(defaults)")
    from open_clanker.gateway.server import serve

    try:
        _run_fast(
            serve(
                config,
                host or config.server.host,
                port if port is not None else config.server.port,
                tls,
                load=lambda: load_config(state.config_path),  # raises: a reload is refused
                verbose=state.verbose,
            )
        )
    except ClankerError as exc:
        fail(exc.message)
    except KeyboardInterrupt:
        pass


def _run_fast(coro: Coroutine[Any, Any, None]) -> None:
    """uvloop when installed (it comes with uvicorn[standard]), as uvicorn itself would pick."""
    try:
        import uvloop
    except ImportError:
        import asyncio

        asyncio.run(coro)
        return
    uvloop.run(coro)


@app.command()
def status(json_out: JsonOpt = False, gateway_url: GatewayOpt = None) -> None:
    """Show the running gateway's status."""
    json_mode(json_out)
    body = call_gateway(gateway_url, "GET", "/api/v1/status")
    if json_out:
        emit(body)
        return
    from open_clanker.cli.render import print_status

    print_status(body)


@app.command()
def send(
    channel: Annotated[str, typer.Option("--channel", help="telegram, discord, slack, …")],
    channel_id: Annotated[str, typer.Option("--channel-id", help="The chat to deliver to.")],
    message: Annotated[str, typer.Option("--message", help="The text to deliver.")],
    json_out: JsonOpt = False,
    gateway_url: GatewayOpt = None,
) -> None:
    """Deliver a message to a chat through the running gateway (no model call)."""
    json_mode(json_out)
    body = {"channel": channel, "channel_id": channel_id, "text": message}
    result = call_gateway(gateway_url, "POST", "/api/v1/message", body)
    if json_out:
        emit(result)
        return
    typer.echo(f"Queued for delivery to {channel}:{channel_id} (id {result['id']}).")


@app.command()
def chat(
    session: Annotated[str | None, typer.Option("--session", help="Session key or name.")] = None,
    gateway_url: GatewayOpt = None,
) -> None:
    """Chat in the terminal with streamed replies, through the running gateway."""
    from open_clanker.cli.chat import run_chat
    from open_clanker.cli.client import gateway_url as resolve_url
    from open_clanker.core.errors import ClankerError

    try:
        run_chat(resolve_url(gateway_url), session)
    except ClankerError as exc:
        fail(exc.message)


@app.command("config-validate")
def config_validate(json_out: JsonOpt = False) -> None:
    """Load and check the config; name every problem by its key path."""
    json_mode(json_out)
    loaded = _load()
    if json_out:
        path = str(loaded.path) if loaded.path else None
        emit({"valid": True, "path": path, "warnings": loaded.warnings})
        return
    for warning in loaded.warnings:
        typer.echo(f"warning: {warning}", err=True)
    where = str(loaded.path) if loaded.path else "no config file (all defaults)"
    typer.echo(f"Configuration is valid: {where}.")


@app.command()
def doctor(json_out: JsonOpt = False) -> None:
    """Check the config, data dir, storage, model provider and channel tokens; exit 1 on a problem."""
    import os

    from open_clanker.cli.doctor import run_doctor
    from open_clanker.gateway.secrets import secret_values

    json_mode(json_out)
    code = run_doctor(state.config_path, lambda c: secret_values(c, os.environ), json_out)
    raise typer.Exit(code)


@app.command("config-generate")
def config_generate(
    path: Annotated[Path, typer.Option("--path", help="Where to write.")] = Path("config.toml"),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Write a commented default config (never secrets)."""
    from open_clanker.config.template import TEMPLATE

    json_mode(json_out)
    if path.exists() and not force:
        fail(f"{path} already exists; use --force to overwrite it.")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(TEMPLATE, encoding="utf-8")
    except OSError as exc:
        fail(f"cannot write {path}: {exc.strerror}.")
    if json_out:
        emit({"path": str(path)})
        return
    typer.echo(f"Wrote {path}. Check it with: open-clanker config-validate -c {path}")


_VALUE_OPTIONS = frozenset(
    {
        "--message",
        "--channel",
        "--channel-id",
        "--session",
        "--path",
        "--host",
        "--port",
        "--gateway-url",
        "--grace",
    }
)


def hoist_global_options(argv: list[str]) -> list[str]:
    """Let `-v` and `-c PATH` come after the command too (`open-clanker gateway -v`)."""
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in _VALUE_OPTIONS and i + 1 < len(argv):
            rest += [arg, argv[i + 1]]  # a value is never an option, even "-v"
            i += 1
        elif arg in ("-v", "--verbose"):
            front.append(arg)
        elif arg in ("-c", "--config") and i + 1 < len(argv):
            front += [arg, argv[i + 1]]
            i += 1
        elif arg.startswith("--config="):
            front.append(arg)
        else:
            rest.append(arg)
        i += 1
    return front + rest


def run() -> None:
    from open_clanker.cli import help_style

    help_style.install(no_color())
    try:
        app(args=hoist_global_options(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(130)
