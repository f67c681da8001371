"""Human-readable rendering of the gateway's status."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from open_clanker.cli import output


def print_status(body: dict[str, Any]) -> None:
    console = output.console()
    provider = body.get("provider", {})
    table = Table(title=f"Open Clanker {body.get('version', '?')}", show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value")
    table.add_row("uptime", f"{body.get('uptime_s', 0):.0f} s")
    table.add_row("provider", f"{provider.get('name')} / {provider.get('model')}")
    table.add_row("chosen because", str(provider.get("reason", "")))
    if provider.get("fallbacks"):
        table.add_row("fallbacks", ", ".join(provider["fallbacks"]))
    table.add_row("storage", str(body.get("storage", {}).get("backend", "?")))
    for name, info in body.get("channels", {}).items():
        detail = f" ({info['detail']})" if info.get("detail") else ""
        table.add_row(f"channel {name}", f"{info.get('state')}{detail}")
    for name, value in body.get("counts", {}).items():
        table.add_row(name.replace("_", " "), str(value))
    console.print(table)
