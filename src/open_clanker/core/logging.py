"""structlog setup: pretty or JSON lines on stderr, JSON lines in an optional rotated file,
context ids (`request_id`) on every line, secrets redacted.

Standard-library loggers (uvicorn, aiohttp, telegram, discord, httpx) and Python warnings go
through the same processors, so every line the process writes has one shape and redaction
applies to all of them.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import re
import sys
from collections.abc import Iterable, MutableMapping
from pathlib import Path
from typing import Any

import structlog

from open_clanker.core.errors import ConfigError
from open_clanker.core.file_modes import open_private_append, private_dir

REDACTED = "[REDACTED]"

# Shapes of secrets we may not know by value: bearer headers, bot tokens in URLs, API keys.
_PATTERNS = [
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"(?<!\d)\d{6,12}:[A-Za-z0-9_-]{30,}"),  # Telegram bot token, also in /bot<token>/
    re.compile(r"\bsk-[A-Za-z0-9_-]{16,}\b"),  # OpenAI / Anthropic keys
    # Discord bot token: base64 user id, timestamp, HMAC.
    re.compile(r"\b[A-Za-z0-9_-]{23,28}\.[A-Za-z0-9_-]{6}\.[A-Za-z0-9_-]{27,64}\b"),
    re.compile(r"(#token=)[^\s\"']+"),
    re.compile(r"\bx(?:ox[abpre]|app)-[A-Za-z0-9-]{10,}"),  # Slack bot, user and app-level tokens
]
# What each pattern cannot match without (a plain `in`, far cheaper than a regex scan): most
# values of a line (ids, names, numbers as text) skip every pattern. "bearer" is looked for
# in the lowered text, as its pattern is case-insensitive.
_NEEDLES: list[tuple[str, ...]] = [
    ("bearer",),
    (":",),
    ("sk-",),
    (".",),
    ("#token=",),
    ("xox", "xapp-"),
]
_LOWERED = (True, False, False, False, False, False)


class Redactor:
    """Replaces known secret values and secret-shaped strings in every event field."""

    def __init__(self) -> None:
        self._secrets: set[str] = set()

    def add(self, values: Iterable[str]) -> None:
        self._secrets.update(v for v in values if v and len(v) >= 6)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        lowered = text.lower()
        for pattern, needles, lower in zip(_PATTERNS, _NEEDLES, _LOWERED, strict=True):
            seen = lowered if lower else text
            if any(needle in seen for needle in needles):
                text = pattern.sub(_redacted, text)
                lowered = text.lower()
        return text

    def __call__(
        self, _logger: Any, _name: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for key, value in event.items():
            if key in _META:
                continue
            if isinstance(value, str):
                event[key] = self.redact(value)
            elif value is not None and not isinstance(value, int | float | bool):
                event[key] = self.redact(str(value))
        return event


# ProcessorFormatter's own entries: read by the processors after this one, never rendered.
_META = frozenset(("_record", "_from_structlog"))


def _redacted(match: re.Match[str]) -> str:
    return (match.group(1) if match.groups() else "") + REDACTED


REDACTOR = Redactor()


class _LevelFirstLogger(structlog.stdlib.BoundLogger):
    """Asks the level before anything else: a line below it costs one check, not a trip
    through the processors (`filter_by_level` stays for other methods). The level is read
    each time, so a reload that changes it takes effect at once."""

    def debug(self, event: str | None = None, *args: Any, **kw: Any) -> Any:
        if not self._logger.isEnabledFor(logging.DEBUG):
            return None
        return super().debug(event, *args, **kw)

    def info(self, event: str | None = None, *args: Any, **kw: Any) -> Any:
        if not self._logger.isEnabledFor(logging.INFO):
            return None
        return super().info(event, *args, **kw)


LEVELS = ("debug", "info", "warning", "error")
# The log file rotates at 10 MB and keeps five old files: at most ~60 MB on disk.
LOG_FILE_MAX_BYTES = 10 * 1024 * 1024
LOG_FILE_BACKUPS = 5


def resolve_level(verbose: bool, env_value: str | None, configured: str) -> str:
    """`-v` wins, then `OPENCLAW_LOG`, then `[logging].level`."""
    if verbose:
        return "debug"
    if env_value:
        value = env_value.strip().lower()
        if value not in LEVELS:
            raise ConfigError(
                f"OPENCLAW_LOG: {env_value!r} is not a log level; use one of "
                + ", ".join(LEVELS)
                + "."
            )
        return value
    return configured


def setup_logging(level: str = "info", fmt: str = "pretty", file: str = "") -> None:
    """Console in `fmt` (pretty or json); `file`, when set, always gets JSON lines.

    A file is read by tools (grep, jq, a log shipper), so it is JSON whatever the console
    shows; colours and column padding only help a person at a terminal.
    """
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.format_exc_info,
        # Before the level, logger name and time are added: those are ours, never secrets.
        REDACTOR,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        # Filtering first: a debug line below the level costs a method call, not a render.
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=_LevelFirstLogger,
        cache_logger_on_first_use=True,
    )
    console_renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        # NO_COLOR (https://no-color.org): set and not empty turns colour off.
        else structlog.dev.ConsoleRenderer(
            colors=sys.stderr.isatty() and not os.environ.get("NO_COLOR")
        )
    )
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(_formatter(shared, console_renderer))
    handlers: list[logging.Handler] = [console]
    if file:
        handlers.append(
            _file_handler(file, _formatter(shared, structlog.processors.JSONRenderer()))
        )
    root = logging.getLogger()
    root.handlers.clear()
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level.upper())
    # No line shows the caller's file and line, the process or the thread: not collecting
    # them saves a stack walk and two system calls per record (the logging HOWTO's
    # "Optimization" table names these switches).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    # Python warnings become log lines too, instead of plain text on stderr.
    logging.captureWarnings(True)
    # uvicorn's own access log is replaced by ours (with request ids, without query strings).
    logging.getLogger("uvicorn.access").disabled = True
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    for noisy in ("aiosqlite", "httpx", "httpcore", "hpack", "websockets", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def _formatter(shared: list[Any], renderer: Any) -> logging.Formatter:
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )


class _PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """Every log file it opens, the first and each one after a rotation, is created 0600."""

    def _open(self) -> Any:
        fd = open_private_append(Path(self.baseFilename))
        return os.fdopen(fd, "a", encoding=self.encoding, errors=self.errors)


def _file_handler(file: str, formatter: logging.Formatter) -> logging.Handler:
    path = Path(file).expanduser()
    try:
        if not path.parent.exists():
            private_dir(path.parent)
        handler = _PrivateRotatingFileHandler(
            path, maxBytes=LOG_FILE_MAX_BYTES, backupCount=LOG_FILE_BACKUPS, encoding="utf-8"
        )
    except OSError as exc:
        raise ConfigError(f"logging.file: cannot write {path}: {exc.strerror}.") from None
    handler.setFormatter(formatter)
    return handler
