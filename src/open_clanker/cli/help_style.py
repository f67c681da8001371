"""Plain help with bold headings, instead of typer's rich help boxes.

Rich help costs `--help` about 150 ms of imports (typer.rich_utils pulls in rich's console,
markdown and pygments-based highlighting), as much again as the rest of the CLI; the plain click
formatter prints the same usage, commands and options. Headings stay bold on a terminal (click
strips escape codes when the output is not one) and carry no escape code at all with NO_COLOR.
"""

from __future__ import annotations

from typing import Any

try:  # newer typer carries its own copy of click (typer._click)
    from typer._click import core as _core
    from typer._click.formatting import HelpFormatter
except ImportError:  # pragma: no cover - older typer runs on click itself
    from click import core as _core  # type: ignore[no-redef]
    from click.formatting import HelpFormatter  # type: ignore[assignment]

_BOLD, _RESET = "\x1b[1m", "\x1b[0m"


class BoldHeadings(HelpFormatter):
    def write_heading(self, heading: str) -> None:
        self.write(f"{'':>{self.current_indent}}{_BOLD}{heading}:{_RESET}\n")

    def write_usage(self, prog: str, args: str = "", prefix: str | None = None) -> None:
        super().write_usage(prog, args, f"{_BOLD}{prefix or 'Usage: '}{_RESET}")


def _whole_short_help(self: Any, limit: int = 45) -> str:
    # click cuts a command's line in the list to fit beside the name ("Make the running gateway
    # re-read its config file and..."); rich wrapped it instead. Wrap too: the list's second
    # column is wrapped to the width by the formatter.
    return str(_short_help(self, 1_000))


_short_help = _core.Command.get_short_help_str


def install(no_color: bool) -> None:
    """Every command's help (the root's and each subcommand's) uses the bold-heading formatter
    and lists commands with their whole first sentence."""
    command: Any = _core.Command
    command.get_short_help_str = _whole_short_help
    if not no_color:
        context: Any = _core.Context
        context.formatter_class = BoldHeadings
