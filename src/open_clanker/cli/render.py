"""Human-readable rendering of the gateway's status."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.table import Table

from open_clanker.cli import output


def _row(table: Table, key: str, value: str) -> None:
    # Values come from the gateway (a model name, a channel's error text): shown as written,
    # never read as rich markup, so `[/]` in one prints instead of crashing the command.
    table.add_row(escape(key), escape(value))


def print_status(body: dict[str, Any]) -> None:
    console = output.console()
    provider = body.get("provider", {})
    table = Table(title=escape(f"Open Clanker {body.get('version', '?')}"), show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value")
    _row(table, "uptime", f"{body.get('uptime_s', 0):.0f} s")
    _row(table, "provider", f"{provider.get('name')} / {provider.get('model')}")
    _row(table, "chosen because", str(provider.get("reason", "")))
    if provider.get("fallbacks"):
        _row(table, "fallbacks", ", ".join(provider["fallbacks"]))
    _row(table, "storage", str(body.get("storage", {}).get("backend", "?")))
    replica = body.get("replica")
    if replica:
        _row(table, "replica", str(replica))  # this one, among several (SPEC §9)
    for name, info in body.get("channels", {}).items():
        detail = f" ({info['detail']})" if info.get("detail") else ""
        if "receiver" in info:  # a platform connection: which replica receives it
            holder = info["receiver"]
            detail += (
                f"; received by {'this replica' if holder == replica else holder or 'none yet'}"
            )
        _row(table, f"channel {name}", f"{info.get('state')}{detail}")
    for name, value in body.get("counts", {}).items():
        _row(table, name.replace("_", " "), str(value))
    console.print(table)
