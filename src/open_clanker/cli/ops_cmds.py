"""`open-clanker pairing …`, `token …` and `reload`: the operator's commands."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from open_clanker.cli.output import JsonOpt, console, emit, fail, json_mode
from open_clanker.cli.state import load

if TYPE_CHECKING:
    from open_clanker.storage.store import Store

GatewayOpt = Annotated[
    str | None,
    typer.Option(
        "--gateway-url", help="Gateway URL (env OPENCLAW_GATEWAY_URL).", show_default=False
    ),
]

pairing_app = typer.Typer(
    help="Manage who may talk to the assistant.", no_args_is_help=True, rich_markup_mode=None
)
token_app = typer.Typer(
    help="Gateway tokens: rotate, list.", no_args_is_help=True, rich_markup_mode=None
)


# -- pairing: the store directly, gateway running or not ---------------------------------------


@pairing_app.command("list")
def pairing_list(json_out: JsonOpt = False) -> None:
    """Pending pairing codes and allowed senders."""
    from open_clanker.cli.pairing import list_access, print_access

    json_mode(json_out)
    data = _run_store(list_access)
    emit(data) if json_out else print_access(data)


@pairing_app.command("approve")
def pairing_approve(
    code: Annotated[str, typer.Argument(help="The code the sender received.")],
    json_out: JsonOpt = False,
) -> None:
    """Approve a pending pairing code: its sender may talk from now on."""
    from open_clanker.cli.pairing import approve

    json_mode(json_out)
    data = _run_store(lambda store: approve(store, code))
    if json_out:
        emit(data)
    else:
        typer.echo(f"Approved {data['approved']}; they can talk to the assistant now.")


@pairing_app.command("revoke")
def pairing_revoke(
    sender: Annotated[str, typer.Argument(help='"<channel>:<id>", as `pairing list` shows it.')],
    json_out: JsonOpt = False,
) -> None:
    """Take away a sender's permission to talk."""
    from open_clanker.cli.pairing import revoke

    json_mode(json_out)
    data = _run_store(lambda store: revoke(store, sender))
    emit(data) if json_out else typer.echo(f"Revoked {data['revoked']}.")


def _run_store(fn: Callable[[Store], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    import asyncio

    from open_clanker.cli.pairing import with_store
    from open_clanker.core.errors import ClankerError

    config = load().config
    try:
        return asyncio.run(with_store(config, fn))
    except ClankerError as exc:
        fail(exc.message, exc.code)


# -- through the running gateway ---------------------------------------------------------------


def call_gateway(
    gateway_url: str | None, method: str, path: str, body: dict[str, Any] | None = None
) -> Any:
    from open_clanker.cli.client import call
    from open_clanker.cli.client import gateway_url as resolve_url
    from open_clanker.core.errors import ClankerError

    try:
        return call(resolve_url(gateway_url), method, path, body)
    except ClankerError as exc:
        fail(exc.message, exc.code)


@token_app.command("rotate")
def token_rotate(
    grace: Annotated[
        str, typer.Option("--grace", help="How long older tokens stay valid: 24h, 30m, 0…")
    ] = "24h",
    json_out: JsonOpt = False,
    gateway_url: GatewayOpt = None,
) -> None:
    """Make a new gateway token and print it once; older ones expire after the grace period."""
    from open_clanker.cli.duration import parse_duration
    from open_clanker.core.errors import InputError

    json_mode(json_out)
    try:
        grace_s = parse_duration(grace)
    except InputError as exc:
        fail(exc.message, exc.code)
    done = call_gateway(gateway_url, "POST", "/api/v1/tokens", {"grace_s": grace_s})
    if json_out:
        emit(done)
        return
    typer.echo(done["token"])  # alone on stdout: `TOKEN=$(open-clanker token rotate)` works
    note = (
        f"New gateway token {done['id']} (shown only now: keep it somewhere safe). "
        f"Older tokens stay valid until {_when(done['others_expire_at'])}."
    )
    if done.get("token_file_updated"):
        note += (
            " The data dir's gateway.token holds the new one, so this machine's CLI keeps working."
        )
    typer.echo(note, err=True)


@token_app.command("list")
def token_list(json_out: JsonOpt = False, gateway_url: GatewayOpt = None) -> None:
    """Gateway tokens: ids, creation and expiry (never the tokens themselves)."""
    json_mode(json_out)
    data = call_gateway(gateway_url, "GET", "/api/v1/tokens")
    if json_out:
        emit(data)
        return
    from rich.table import Table

    table = Table(title="Rotated gateway tokens")
    for col in ("id", "origin", "created", "expires", "state"):
        table.add_column(col)
    for t in data["tokens"]:
        expires = _when(t["expires_at"]) if t["expires_at"] else "never"
        table.add_row(t["id"], t["origin"], _when(t["created_at"]), expires, t["state"])
    out = console()
    out.print(table if data["tokens"] else "No rotated tokens yet (open-clanker token rotate).")
    if data["configured"]:
        out.print(
            f"{data['configured']} configured token(s) (server.auth_tokens or "
            "OPENCLAW_GATEWAY_TOKEN): valid while configured."
        )


def reload_command(json_out: JsonOpt = False, gateway_url: GatewayOpt = None) -> None:
    """Make the running gateway re-read its config file and secret files (as kill -HUP)."""
    json_mode(json_out)
    result = call_gateway(gateway_url, "POST", "/api/v1/reload")
    if json_out:
        emit(result)
        return
    if result["applied"]:
        typer.echo("Reloaded; applied: " + ", ".join(result["applied"]) + ".")
    else:
        typer.echo("Reloaded; nothing changed.")
    if result["restart_required"]:
        typer.echo(
            "Needs a restart (kept as they were): " + ", ".join(result["restart_required"]) + ".",
            err=True,
        )


def _when(iso: str) -> str:
    return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M UTC")
