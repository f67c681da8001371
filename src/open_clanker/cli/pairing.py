"""`open-clanker pairing …`: reads and writes the store directly (gateway running or not)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import typer

from open_clanker.config.model import Config
from open_clanker.config.paths import default_storage_url
from open_clanker.core.errors import InputError, NotFoundError
from open_clanker.pipeline.access import PairingDesk
from open_clanker.storage.store import Store


async def with_store(config: Config, fn: Callable[[Store], Awaitable[None]]) -> None:
    store = await Store.open(config.storage.url or default_storage_url())
    try:
        await fn(store)
    finally:
        await store.close()


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


async def list_access(store: Store) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    codes = await store.access.pending_codes(time.time())
    allowed = await store.access.allowed()
    table = Table(title="Pending pairing codes")
    for col in ("code", "sender", "chat", "expires"):
        table.add_column(col)
    for c in codes:
        # Sender and chat ids come from the platforms: never read as rich markup.
        table.add_row(
            c.code, escape(f"{c.channel}:{c.sender}"), escape(c.chat_id), _when(c.expires_at)
        )
    console.print(table if codes else "No pending pairing codes.")
    table = Table(title="Allowed senders")
    for col in ("sender", "since", "via"):
        table.add_column(col)
    for a in allowed:
        table.add_row(escape(f"{a.channel}:{a.sender}"), _when(a.added_at), escape(a.via))
    console.print(
        table if allowed else escape("No paired senders (see [access].allow in the config too).")
    )


async def approve(store: Store, code: str) -> None:
    approved = await PairingDesk(store.access).approve(code)
    if approved is None:
        raise NotFoundError(
            f"No pending pairing code {code.strip().upper()!r}: it may have expired or been used."
        )
    typer.echo(
        f"Approved {approved.channel}:{approved.sender}; they can talk to the assistant now."
    )


async def revoke(store: Store, sender: str) -> None:
    channel, sep, ident = sender.partition(":")
    if not sep or not channel or not ident:
        raise InputError(
            f'Give the sender as "<channel>:<id>", e.g. telegram:123456 (got {sender!r}).'
        )
    if not await store.access.revoke(channel, ident):
        raise NotFoundError(f"{sender} is not a paired sender.")
    typer.echo(f"Revoked {sender}.")
