"""Load the config: find the file, overlay the environment, validate, name every problem.

Problems are reported by key path (`agent.max_tokens`), with a "did you mean" for unknown keys
close to a real one. Renamed keys still load, with a warning naming the new key.
"""

from __future__ import annotations

import difflib
import json
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from open_clanker.config.model import Config
from open_clanker.config.paths import config_search_path
from open_clanker.config.token_rules import token_problems
from open_clanker.core.errors import ConfigError
from open_clanker.core.loopback import is_loopback_name
from open_clanker.core.secret_env import FILE_SUFFIX, GATEWAY_TOKEN_ENV, secret_from_env

ENV_PREFIX = "OPENCLAW_"

# Old key path -> new key path. Keeps upgrades from stopping a running deployment.
RENAMED_KEYS: dict[tuple[str, ...], tuple[str, ...]] = {
    ("agent", "history_limit"): ("agent", "history_messages"),
    ("limits", "rate_limit_per_minute"): ("limits", "messages_per_minute"),
    ("server", "bind"): ("server", "host"),
}

# The seed's env names (and the vendors' own) for secrets that are config keys.
SECRET_ENV_KEYS: dict[str, tuple[str, ...]] = {
    "OPENCLAW_TELEGRAM_BOT_TOKEN": ("channels", "telegram", "bot_token"),
    "OPENCLAW_DISCORD_BOT_TOKEN": ("channels", "discord", "bot_token"),
    "OPENCLAW_SLACK_BOT_TOKEN": ("channels", "slack", "bot_token"),
    "OPENCLAW_SLACK_APP_TOKEN": ("channels", "slack", "app_token"),
    "OPENCLAW_SLACK_SIGNING_SECRET": ("channels", "slack", "signing_secret"),
}


@dataclass
class LoadedConfig:
    config: Config
    path: Path | None
    warnings: list[str] = field(default_factory=list)


def find_config_file(explicit: str | Path | None) -> Path | None:
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConfigError(f"Config file {path} does not exist.")
        return path
    env = os.environ.get("OPENCLAW_CONFIG")
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise ConfigError(f"Config file {path} (from OPENCLAW_CONFIG) does not exist.")
        return path
    for candidate in config_search_path():
        if candidate.is_file():
            return candidate
    return None


def load_config(explicit: str | Path | None = None) -> LoadedConfig:
    path = find_config_file(explicit)
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}.") from None
        except OSError as exc:
            raise ConfigError(f"Cannot read {path}: {exc.strerror}.") from None
    warnings = _apply_renames(raw)
    sources = _overlay_env(raw, os.environ)
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        problems = [_describe(err, sources) for err in exc.errors()]
        where = f" in {path}" if path else ""
        raise ConfigError(f"The configuration{where} is invalid.", problems) from None
    problems = semantic_problems(config)
    if problems:
        raise ConfigError("The configuration is invalid.", problems)
    return LoadedConfig(config=config, path=path, warnings=warnings)


def semantic_problems(config: Config) -> list[str]:
    """Checks that span keys, which field types cannot express."""
    problems: list[str] = []
    tg = config.channels.telegram
    if tg is not None:
        if not tg.bot_token.get_secret_value():
            problems.append(
                "channels.telegram.bot_token: required when [channels.telegram] is present "
                "(or set OPENCLAW_TELEGRAM_BOT_TOKEN)."
            )
        if tg.mode == "webhook" and not tg.webhook_url:
            problems.append('channels.telegram.webhook_url: required when mode = "webhook".')
        if tg.mode == "webhook" and not tg.webhook_secret.get_secret_value():
            problems.append(
                'channels.telegram.webhook_secret: required when mode = "webhook" (Telegram '
                "sends it with every update, and updates without it are refused); use 1-256 "
                "characters from A-Z a-z 0-9 _ -."
            )
    dc = config.channels.discord
    if dc is not None and not dc.bot_token.get_secret_value():
        problems.append(
            "channels.discord.bot_token: required when [channels.discord] is present "
            "(or set OPENCLAW_DISCORD_BOT_TOKEN)."
        )
    problems += slack_problems(config)
    tls = config.server.tls
    if tls is not None and bool(tls.cert_path) != bool(tls.key_path):
        problems.append("server.tls: cert_path and key_path must be set together.")
    for i, entry in enumerate(config.access.allow):
        if ":" not in entry:
            problems.append(
                f'access.allow[{i}]: {entry!r} should look like "<channel>:<id>", '
                'e.g. "telegram:123456".'
            )
    tokens = [t.get_secret_value() for t in config.server.auth_tokens]
    problems += token_problems(tokens, is_loopback_name(config.server.host))
    url = config.storage.url
    if url and not url.startswith(("sqlite://", "postgresql://", "postgres://")):
        problems.append("storage.url: must start with sqlite:// or postgresql://.")
    if not config.bus.url.startswith(("memory://", "redis://", "rediss://")):
        problems.append("bus.url: must be memory:// or redis://host:port/db.")
    return problems


def slack_problems(config: Config) -> list[str]:
    sl = config.channels.slack
    if sl is None:
        return []
    problems = []
    if not sl.bot_token.get_secret_value():
        problems.append(
            "channels.slack.bot_token: required when [channels.slack] is present "
            "(an xoxb-… bot token; or set OPENCLAW_SLACK_BOT_TOKEN)."
        )
    if sl.mode == "socket" and not sl.app_token.get_secret_value():
        problems.append(
            'channels.slack.app_token: required when mode = "socket" (an xapp-… app-level '
            'token with connections:write; or set OPENCLAW_SLACK_APP_TOKEN, or use mode = "events").'
        )
    if sl.mode == "events" and not sl.signing_secret.get_secret_value():
        problems.append(
            'channels.slack.signing_secret: required when mode = "events" (Basic Information -> '
            "Signing Secret in the app's settings; or set OPENCLAW_SLACK_SIGNING_SECRET)."
        )
    return problems


def _apply_renames(raw: dict[str, Any]) -> list[str]:
    warnings = []
    for old, new in RENAMED_KEYS.items():
        parent = _walk(raw, old[:-1])
        if parent is None or old[-1] not in parent:
            continue
        value = parent.pop(old[-1])
        target = _walk(raw, new[:-1], create=True)
        assert target is not None
        target.setdefault(new[-1], value)
        warnings.append(
            f"{'.'.join(old)} was renamed to {'.'.join(new)}; it still works, "
            "but please update your config."
        )
    return warnings


def _overlay_env(raw: dict[str, Any], env: os._Environ[str] | dict[str, str]) -> dict[str, str]:
    """Apply OPENCLAW_<SECTION>__<KEY> and the seed's secret names. Returns key path -> env name."""
    sources: dict[str, str] = {}
    for name, value in sorted(env.items()):
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        path = tuple(part.lower() for part in name[len(ENV_PREFIX) :].split("__"))
        if not all(path):
            continue
        if is_file_variable(path[-1]):  # OPENCLAW_STORAGE__URL_FILE=/run/secrets/db-url
            path = (*path[:-1], path[-1][: -len(FILE_SUFFIX)])
            value = secret_from_env(env, name[: -len(FILE_SUFFIX)])
        parent = _walk(raw, path[:-1], create=True)
        if parent is None:
            continue
        parent[path[-1]] = _parse_env_value(value)
        sources[".".join(path)] = name
    for name, path in SECRET_ENV_KEYS.items():
        value = secret_from_env(env, name)
        if not value:
            continue
        # A bot token enables its channel; other secrets only fill a section that exists.
        parent = _walk(raw, path[:-1], create=path[-1] == "bot_token")
        if parent is not None and not parent.get(path[-1]):
            parent[path[-1]] = value
            sources[".".join(path)] = name
    gateway_token = secret_from_env(env, GATEWAY_TOKEN_ENV)
    if gateway_token:
        server = _walk(raw, ("server",), create=True)
        if server is not None:
            tokens = server.get("auth_tokens", [])
            if isinstance(tokens, list) and gateway_token not in tokens:
                server["auth_tokens"] = [*tokens, gateway_token]
    return sources


def is_file_variable(key: str) -> bool:
    """`url_file` names a file holding `url`; a key that is itself `file` (logging.file) does not."""
    return key.endswith(FILE_SUFFIX.lower()) and len(key) > len(FILE_SUFFIX)


def _parse_env_value(value: str) -> Any:
    stripped = value.strip()
    if stripped.startswith(("[", "{")):
        try:
            return json.loads(stripped)
        except json.JSONDecodeError:
            return value
    return value


def _walk(
    raw: dict[str, Any], path: tuple[str, ...], create: bool = False
) -> dict[str, Any] | None:
    node: Any = raw
    for part in path:
        if not isinstance(node, dict):
            return None
        if part not in node:
            if not create:
                return None
            node[part] = {}
        node = node[part]
    return node if isinstance(node, dict) else None


def _describe(err: Any, sources: dict[str, str]) -> str:
    loc = tuple(err["loc"])
    key = _format_loc(loc)
    origin = sources.get(".".join(str(p) for p in loc))
    suffix = f" (from {origin})" if origin else ""
    if err["type"] == "extra_forbidden":
        hint = _did_you_mean(loc)
        return f"{key}: unknown key{hint}{suffix}."
    msg = str(err["msg"]).rstrip(".")
    return f"{key}: {msg}{suffix}."


def _format_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _did_you_mean(loc: tuple[Any, ...]) -> str:
    model: type[BaseModel] | None = Config
    for part in loc[:-1]:
        if model is None or isinstance(part, int):
            continue
        field_info = model.model_fields.get(str(part))
        model = _model_of(field_info.annotation) if field_info else None
    if model is None:
        return ""
    matches = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1, cutoff=0.6)
    if not matches:
        return ""
    parent = _format_loc(loc[:-1])
    return f" (did you mean '{parent + '.' if parent else ''}{matches[0]}'?)"


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_of(arg)
        if found is not None:
            return found
    return None
