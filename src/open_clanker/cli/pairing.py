"""`open-clanker pairing …`: reads and writes the store directly (gateway running or not)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from open_clanker.cli.output import console
from open_clanker.config.model import Config
from open_clanker.config.paths import default_storage_url
from open_clanker.core.errors import InputError, NotFoundError
from open_clanker.pipeline.access import PairingDesk
from open_clanker.storage.store import Store

T = TypeVar("T")


async def with_store(config: Config, fn: Callable[[Store], Awaitable[T]]) -> T:
    store = await Store.open(config.storage.url or default_storage_url())
    try:
        return await fn(store)
    finally:
        await store.close()


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def _when(iso: str) -> str:
    return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M UTC")


async def list_access(store: Store) -> dict[str, Any]:
    codes = await store.access.pending_codes(time.time())
    allowed = await store.access.allowed()
    return {
        "pending": [
            {
                "code": c.code,
                "sender": f"{c.channel}:{c.sender}",
                "chat": c.chat_id,
                "expires_at": _iso(c.expires_at),
            }
            for c in codes
        ],
        "allowed": [
            {"sender": f"{a.channel}:{a.sender}", "since": _iso(a.added_at), "via": a.via}
            for a in allowed
        ],
    }


def print_access(data: dict[str, Any]) -> None:
    from rich.markup import escape
    from rich.table import Table

    out = console()
    table = Table(title="Pending pairing codes")
    for col in ("code", "sender", "chat", "expires"):
        table.add_column(col)
    # Sender and chat ids come from the platforms: never read as rich markup.
    for c in data["pending"]:
        table.add_row(c["code"], escape(c["sender"]), escape(c["chat"]), _when(c["expires_at"]))
    out.print(table if data["pending"] else "No pending pairing codes.")
    table = Table(title="Allowed senders")
    for col in ("sender", "since", "via"):
        table.add_column(col)
    for a in data["allowed"]:
        table.add_row(escape(a["sender"]), _when(a["since"]), escape(a["via"]))
    out.print(
        table
        if data["allowed"]
        else escape("No paired senders (see [access].allow in the config too).")
    )


async def approve(store: Store, code: str) -> dict[str, Any]:
    approved = await PairingDesk(store.access).approve(code)
    if approved is None:
        raise NotFoundError(
            f"No pending pairing code {code.strip().upper()!r}: it may have expired or been used."
        )
    return {"approved": f"{approved.channel}:{approved.sender}", "code": approved.code}


async def revoke(store: Store, sender: str) -> dict[str, Any]:
    channel, sep, ident = sender.partition(":")
    if not sep or not channel or not ident:
        raise InputError(
            f'Give the sender as "<channel>:<id>", e.g. telegram:123456 (got {sender!r}).'
        )
    if not await store.access.revoke(channel, ident):
        raise NotFoundError(f"{sender} is not a paired sender.")
    return {"revoked": sender}
