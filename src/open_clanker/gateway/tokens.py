"""Bearer tokens: configured ones, or one generated at first start and kept in the data dir."""

from __future__ import annotations

import hmac
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from open_clanker.config.model import Config
from open_clanker.config.paths import token_file
from open_clanker.config.token_rules import token_problems
from open_clanker.core.errors import ConfigError
from open_clanker.core.file_modes import private_dir, warn_if_readable_by_others
from open_clanker.core.logging import REDACTOR
from open_clanker.core.loopback import is_loopback_name
from open_clanker.gateway.token_ring import RotatedTokens


@dataclass(frozen=True)
class Tokens:
    values: tuple[str, ...]
    generated: bool  # True: the data dir's token is in use; the web chat link is printed
    # Tokens made by `token rotate`, from the database (gateway/rotation.py).
    rotated: RotatedTokens = field(default_factory=RotatedTokens, compare=False)

    def check(self, presented: str) -> bool:
        """Constant-time against every token, so timing says nothing about which one matched."""
        ok = False
        candidate = presented.encode()
        for value in self.values:
            ok |= hmac.compare_digest(candidate, value.encode())
        ok |= self.rotated.check(presented)
        return ok

    def __repr__(self) -> str:
        return f"Tokens(count={len(self.values)}, generated={self.generated})"


def read_token_file(path: Path | None = None) -> str | None:
    path = path or token_file()
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return value or None


def load_or_create_token(path: Path | None = None) -> str:
    path = path or token_file()
    existing = read_token_file(path)
    if existing:
        return existing
    private_dir(path.parent)
    value = secrets.token_urlsafe(32)
    # Created 0600 from the first byte: never readable by others, not even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(value + "\n")
    return value


def is_loopback_host(host: str) -> bool:
    return is_loopback_name(host)


def resolve_tokens(config: Config, host: str) -> Tokens:
    configured = tuple(t.get_secret_value() for t in config.server.auth_tokens)
    problems = token_problems(configured, is_loopback_host(host))
    if problems:
        raise ConfigError(problems[0], problems)
    if configured:
        return Tokens(configured, generated=False)
    if not is_loopback_host(host):
        raise ConfigError(
            f"Refusing to listen on {host} without an auth token: set OPENCLAW_GATEWAY_TOKEN "
            "or server.auth_tokens, or bind 127.0.0.1."
        )
    path = token_file()
    token = load_or_create_token(path)
    REDACTOR.add([token])  # known to the redactor before any line could carry it
    warn_if_readable_by_others(path)
    return Tokens((token,), generated=True)
