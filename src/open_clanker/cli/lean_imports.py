"""Imports the gateway process does not need, kept out of it.

Libraries import rich when it is installed, for features the gateway never uses: structlog
(`structlog.dev`: rich tracebacks for the console renderer; `structlog.tracebacks`: rich's
pretty-printer) and httpx (under python-telegram-bot: its command-line client, with click and
pygments). rich brings pygments and attrs along: measured 2.9 MiB of idle RSS with the web
chat alone and more with Telegram (docs/benchmarks.md, "Levers: start-up and idle memory"). Each
of these imports is written `try: import rich except ImportError:` and falls back (structlog
renders exceptions as Python prints them), so the gateway marks rich as absent for its whole
process. The gateway itself draws no rich output; the other commands (tables, `doctor`) are not
affected: this runs in `gateway` only.
"""

from __future__ import annotations

import sys


def keep_rich_out() -> None:
    """`import rich` raises ImportError in this process from now on (unless already imported)."""
    sys.modules.setdefault("rich", None)  # type: ignore[arg-type]
