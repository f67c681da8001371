"""How commands print: a readable text or, with `--json`, JSON on stdout (and errors as one
JSON object on stderr); colour only when `NO_COLOR` is unset (https://no-color.org)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

if TYPE_CHECKING:
    from rich.console import Console

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (errors too).")]


class _Mode:
    json: bool = False


MODE = _Mode()


def no_color() -> bool:
    return bool(os.environ.get("NO_COLOR"))


def console(**kwargs: Any) -> Console:
    """A rich console; with NO_COLOR it writes no escape code at all (not even bold)."""
    from rich.console import Console

    return Console(color_system=None if no_color() else "auto", **kwargs)


def json_mode(on: bool) -> None:
    MODE.json = on


def emit(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


def fail(message: str, code: str = "error", problems: Sequence[str] = ()) -> NoReturn:
    """One line on stderr (or one JSON object with --json) and exit 1."""
    extra = [p for p in problems if p != message]
    if MODE.json:
        error: dict[str, Any] = {"code": code, "message": message}
        if extra:
            error["problems"] = extra
        typer.echo(json.dumps({"error": error}, ensure_ascii=False), err=True)
    else:
        typer.echo(f"error: {message}", err=True)
        for problem in extra:
            typer.echo(f"  - {problem}", err=True)
    raise typer.Exit(1)
