"""`open-clanker doctor`: one line per check (config, data dir, storage, model provider, channel
tokens; Slack's in `doctor_slack.py`) and exit 1 when any fails.

Network checks are one cheap authenticated request each, bounded by `NETWORK_TIMEOUT_S`. No
secret is ever printed: a refused key names the setting to fix, and every line also goes
through the log redactor. Nothing is created: a database that does not exist yet is reported,
not made.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import stat
import tempfile
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import sqlalchemy as sa
from rich.console import Console
from rich.text import Text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from open_clanker import __version__
from open_clanker.agent.http import probe_openai_compatible
from open_clanker.agent.select import (
    KEY_ENV_NAMES,
    ProviderChoice,
    choose_provider,
    find_key,
    resolve_fallback,
)
from open_clanker.channels.discord.config import DiscordConfig
from open_clanker.channels.telegram.config import TelegramConfig
from open_clanker.cli import output
from open_clanker.config.loader import LoadedConfig, load_config
from open_clanker.config.model import Config
from open_clanker.config.paths import data_dir, default_storage_url, token_file
from open_clanker.core.errors import ConfigError
from open_clanker.core.logging import Redactor
from open_clanker.storage.database import Database
from open_clanker.storage.migrations import LATEST

NETWORK_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str  # what was found, or the problem
    fix: str = ""  # what to do about a problem
    notes: tuple[str, ...] = ()  # indented lines under it (config problems, warnings)


def ok(name: str, detail: str, *notes: str) -> Check:
    return Check(name, True, detail, notes=notes)


def fail(name: str, detail: str, fix: str = "", *notes: str) -> Check:
    return Check(name, False, detail, fix, notes)


def run_doctor(
    config_path: str | None, secrets_of: Callable[[Config], list[str]], json_out: bool = False
) -> int:
    """Print every check (one JSON document with `json_out`); 0 when all passed, else 1."""
    redactor = Redactor()
    if json_out:
        found: list[Check] = []
        code = _run(config_path, secrets_of, redactor, lambda checks: found.extend(checks))
        print_json(redactor, found)
        return code
    console = output.console(highlight=False, soft_wrap=True)
    return _run(config_path, secrets_of, redactor, lambda checks: _print(console, redactor, checks))


def _run(
    config_path: str | None,
    secrets_of: Callable[[Config], list[str]],
    redactor: Redactor,
    show: Callable[[list[Check]], None],
) -> int:
    try:
        loaded = load_config(config_path)
    except ConfigError as exc:
        problems = tuple(p for p in exc.problems if p != exc.message)
        checks = [
            fail(
                "config", exc.message, "fix the keys named below, then run doctor again", *problems
            ),
            *check_data_dir(data_dir()),
        ]
        show(checks)
        return 1
    redactor.add(secrets_of(loaded.config))
    checks = [config_check(loaded), *check_data_dir(data_dir())]
    show(checks)  # before the network checks, which may take seconds
    later = asyncio.run(network_checks(loaded.config, os.environ))
    show(later)
    return 0 if all(c.ok for c in checks + later) else 1


def print_json(redactor: Redactor, checks: list[Check]) -> None:
    def clean(text: str) -> str:
        return redactor.redact(text)

    output.emit(
        {
            "ok": all(c.ok for c in checks),
            "checks": [
                {
                    "name": c.name,
                    "ok": c.ok,
                    "detail": clean(c.detail),
                    "fix": clean(c.fix),
                    "notes": [clean(n) for n in c.notes],
                }
                for c in checks
            ],
        }
    )


def _print(console: Console, redactor: Redactor, checks: list[Check]) -> None:
    for check in checks:
        tag = Text("ok  ", style="green") if check.ok else Text("FAIL", style="bold red")
        line = f" {check.name}: {check.detail}"
        if check.fix:
            line += f" — {check.fix}"
        console.print(Text.assemble(tag, redactor.redact(line)))
        for note in check.notes:
            console.print(Text(redactor.redact(f"     - {note}")))


# -- local checks ----------------------------------------------------------------------------


def config_check(loaded: LoadedConfig) -> Check:
    where = str(loaded.path) if loaded.path else "no config file; every key has its default"
    return ok("config", where, *(f"warning: {w}" for w in loaded.warnings))


def _creatable(path: Path) -> Path | None:
    """The nearest existing ancestor when `path` could be made there, else None."""
    parent = path
    while not parent.exists():
        if parent.parent == parent:
            return None
        parent = parent.parent
    return parent if parent.is_dir() and _writable(parent) else None


def _writable(directory: Path) -> bool:
    # Trying is the only honest test: permission bits say nothing for root or a read-only mount.
    try:
        with tempfile.TemporaryFile(dir=directory):
            return True
    except OSError:
        return False


def check_data_dir(path: Path) -> list[Check]:
    fix = "set OPENCLAW_DATA_DIR to a directory this user can write, or fix its permissions"
    if path.exists():
        if not path.is_dir():
            return [fail("data dir", f"{path} is not a directory", fix)]
        if not _writable(path):
            return [fail("data dir", f"{path} is not writable by this user", fix)]
        checks = [ok("data dir", f"{path} is writable")]
    elif _creatable(path) is None:
        return [fail("data dir", f"{path} does not exist and cannot be created", fix)]
    else:
        return [ok("data dir", f"{path} does not exist yet; the gateway creates it at first start")]
    tokens = token_file()
    if tokens.exists():
        mode = stat.S_IMODE(tokens.stat().st_mode)
        if mode & 0o077:
            checks.append(
                fail(
                    "token file",
                    f"{tokens} is readable by other users (mode {mode:04o})",
                    f"run: chmod 600 {tokens}",
                )
            )
        else:
            checks.append(ok("token file", f"{tokens} (mode {mode:04o})"))
    return checks


# -- checks that open connections ----------------------------------------------------------


async def network_checks(config: Config, env: Mapping[str, str]) -> list[Check]:
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=NETWORK_TIMEOUT_S)
    ) as http:
        parts = [check_storage(config.storage.url), check_providers(config, env, http)]
        if config.channels.telegram is not None:
            parts.append(_listed(check_telegram(config.channels.telegram)))
        if config.channels.discord is not None:
            parts.append(_listed(check_discord(config.channels.discord, http)))
        if config.channels.slack is not None:
            from open_clanker.cli.doctor_slack import check_slack

            parts.append(check_slack(config.channels.slack, http))
        results = await asyncio.gather(*parts)
    return [check for group in results for check in group]


async def _listed(check: Awaitable[Check]) -> list[Check]:
    return [await check]


def _schema_version(conn: sa.Connection) -> int | None:
    if not sa.inspect(conn).has_table("schema_version"):
        return None
    version = conn.execute(sa.text("SELECT max(version) FROM schema_version")).scalar()
    return None if version is None else int(version)


async def check_storage(url: str) -> list[Check]:
    url = url or default_storage_url()
    shown = make_url(url).render_as_string(hide_password=True)
    missing = _sqlite_not_there(url)
    if missing is not None:
        return [missing]
    try:
        async with asyncio.timeout(NETWORK_TIMEOUT_S):
            db = Database(url)
            try:
                version = await db.read(_schema_version)
            finally:
                await db.close()
    except ConfigError as exc:
        return [fail("storage", exc.message)]
    except TimeoutError:
        return [
            fail("storage", f"no answer from {shown} within {NETWORK_TIMEOUT_S:.0f} s", _DB_FIX)
        ]
    except (SQLAlchemyError, OSError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        return [fail("storage", f"cannot open {shown}: {reason}", _DB_FIX)]
    if version is None:
        state = "no tables yet; the gateway creates them at start"
    elif version < LATEST:
        state = f"schema v{version}; the gateway upgrades it to v{LATEST} at start"
    elif version > LATEST:
        return [
            fail(
                "storage",
                f"{shown} has schema v{version}, newer than this open-clanker knows (v{LATEST})",
                "upgrade open-clanker before starting it on this database",
            )
        ]
    else:
        state = f"schema v{version}, up to date"
    return [ok("storage", f"{shown}: {state}")]


_DB_FIX = "check storage.url and that the database server is running"


def _sqlite_not_there(url: str) -> Check | None:
    """A SQLite file that does not exist yet is not created here, only judged creatable."""
    if not url.startswith("sqlite:///"):
        return None
    path = Path(url.split(":///", 1)[1])
    if path.exists():
        return None
    if _creatable(path.parent) is None:
        return fail("storage", f"{path} cannot be created", "check storage.url")
    return ok("storage", f"{path} does not exist yet; the gateway creates it at first start")


def models_url(choice: ProviderChoice) -> tuple[str, dict[str, str]]:
    """The vendor's cheapest authenticated request: list the models."""
    if choice.name == "anthropic":
        headers = {"anthropic-version": "2023-06-01"}
        if choice.api_key:
            headers["x-api-key"] = choice.api_key
        return f"{choice.base_url}/v1/models", headers
    headers = {"authorization": f"Bearer {choice.api_key}"} if choice.api_key else {}
    return f"{choice.base_url}/models", headers


async def check_providers(
    config: Config, env: Mapping[str, str], http: aiohttp.ClientSession
) -> list[Check]:
    async def probe(url: str) -> bool:
        return await probe_openai_compatible(http, url)

    agent = config.agent
    try:
        choice = await choose_provider(agent, probe, env)
    except ConfigError as exc:
        return [fail("provider", exc.message)]
    checks = [ok("provider", f"{choice.name} / {choice.model}, chosen because {choice.reason}")]
    checks.append(
        await check_reachable("provider api", "agent", choice, agent.api_key_env, env, http)
    )
    for i, fallback in enumerate(agent.fallbacks):
        name, section = f"fallback {i + 1}", f"agent.fallbacks[{i}]"
        try:
            fb = resolve_fallback(fallback, env)
        except ConfigError as exc:
            checks.append(fail(name, exc.message))
            continue
        checks.append(await check_reachable(name, section, fb, fallback.api_key_env, env, http))
    return checks


async def check_reachable(
    name: str,
    section: str,
    choice: ProviderChoice,
    api_key_env: str,
    env: Mapping[str, str],
    http: aiohttp.ClientSession,
) -> Check:
    if choice.name == "echo":
        return ok(name, "echo answers offline; nothing to reach")
    url, headers = models_url(choice)
    where = f"check {section}.base_url and that the server is running"
    try:
        async with http.get(url, headers=headers) as resp:
            status = resp.status
    except TimeoutError:
        return fail(name, f"no answer from {url} within {NETWORK_TIMEOUT_S:.0f} s", where)
    except aiohttp.ClientError as exc:
        return fail(name, f"cannot reach {url} ({_reason(exc)})", where)
    if status == 200:
        accepted = "the API key was accepted" if choice.api_key else "no API key needed"
        return ok(name, f"{choice.name} at {choice.base_url} answered; {accepted}")
    if status in (401, 403):
        _, source = find_key(choice.name, api_key_env, env)
        names = source or api_key_env or " or ".join(KEY_ENV_NAMES.get(choice.name, ()))
        problem = "the API key was refused" if choice.api_key else "the server wants an API key"
        return fail(name, f"{problem} (HTTP {status} from {url})", f"check {names}")
    if status == 404:
        return fail(name, f"{url} answered 404", f"check {section}.base_url")
    return fail(name, f"{url} answered HTTP {status}", "the provider may be down; try again later")


def _reason(exc: aiohttp.ClientError) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError):
        if exc.os_error.errno == errno.ECONNREFUSED or "refused" in str(exc.os_error).lower():
            return "connection refused"
        if exc.os_error.strerror:
            return exc.os_error.strerror.lower()
    return type(exc).__name__


async def check_telegram(tg: TelegramConfig) -> Check:
    """`getMe` through python-telegram-bot, as the gateway will call it."""
    from telegram.error import InvalidToken, NetworkError, TelegramError

    from open_clanker.channels.telegram.adapter import build_bot
    from open_clanker.channels.telegram.errors import describe

    recheck = "check OPENCLAW_TELEGRAM_BOT_TOKEN or [channels.telegram].bot_token"
    fix_url = "check [channels.telegram].api_base_url and the network"
    base = tg.api_base_url
    try:
        bot = build_bot(tg)
    except ConfigError as exc:
        return fail("telegram", exc.message)
    try:
        async with asyncio.timeout(NETWORK_TIMEOUT_S):
            await bot.initialize()  # calls getMe
            me = await bot.get_me()
    except InvalidToken:
        return fail("telegram", f"{base} refused the bot token", recheck)
    except TimeoutError:
        return fail("telegram", f"no answer from {base} within {NETWORK_TIMEOUT_S:.0f} s", fix_url)
    except NetworkError as exc:
        return fail("telegram", f"cannot reach {base} ({describe(exc, bot.token)})", fix_url)
    except TelegramError as exc:
        return fail("telegram", describe(exc, bot.token), recheck)
    finally:
        with contextlib.suppress(TelegramError):
            await bot.shutdown()
    return ok("telegram", f"bot @{me.username} at {base} accepted the token ({tg.mode} mode)")


async def check_discord(dc: DiscordConfig, http: aiohttp.ClientSession) -> Check:
    """`GET /users/@me` with the bot token: a plain REST call, no gateway connection."""
    base = dc.api_base_url.rstrip("/")
    url = f"{base}/users/@me"
    token = dc.bot_token.get_secret_value()
    if not token:
        return fail("discord", "no bot token", "set OPENCLAW_DISCORD_BOT_TOKEN")
    headers = {
        "Authorization": f"Bot {token}",
        "User-Agent": f"DiscordBot (https://github.com/open-clanker, {__version__})",
    }
    fix_url = "check [channels.discord].api_base_url and the network"
    try:
        async with http.get(url, headers=headers) as resp:
            status = resp.status
            body = await resp.json(content_type=None) if status == 200 else None
    except TimeoutError:
        return fail("discord", f"no answer from {url} within {NETWORK_TIMEOUT_S:.0f} s", fix_url)
    except (aiohttp.ClientError, ValueError) as exc:
        return fail("discord", f"cannot reach {url} ({_reason_any(exc)})", fix_url)
    if status == 200:
        name = body.get("username", "?") if isinstance(body, dict) else "?"
        return ok("discord", f"bot {name} at {base} accepted the token")
    if status == 401:
        return fail(
            "discord",
            f"{base} refused the bot token",
            "check OPENCLAW_DISCORD_BOT_TOKEN or [channels.discord].bot_token",
        )
    return fail("discord", f"{url} answered HTTP {status}", fix_url)


def _reason_any(exc: Exception) -> str:
    return _reason(exc) if isinstance(exc, aiohttp.ClientError) else type(exc).__name__
