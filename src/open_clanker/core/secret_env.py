"""Secrets from the environment, directly or as `<NAME>_FILE` naming a file that holds them
(SPEC §4.2; how Docker and Kubernetes mount secrets). Read at start and at every reload."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from open_clanker.core.errors import ConfigError

FILE_SUFFIX = "_FILE"
MAX_SECRET_BYTES = 64 * 1024  # a secret file is a token or a URL, never a large file

GATEWAY_TOKEN_ENV = "OPENCLAW_GATEWAY_TOKEN"  # noqa: S105 (a variable name, not a token)


def secret_from_env(env: Mapping[str, str], name: str) -> str:
    """`env[name]`, else the contents of the file `env[name + "_FILE"]` (trailing newline
    removed), else ''. A file that cannot be read is a `ConfigError` naming the variable."""
    value = env.get(name, "")
    path = env.get(name + FILE_SUFFIX, "")
    if not path:
        return value
    if value:
        raise ConfigError(f"{name} and {name}{FILE_SUFFIX} are both set; keep one of them.")
    return read_secret_file(name + FILE_SUFFIX, path)


def read_secret_file(variable: str, path: str) -> str:
    try:
        with Path(path).expanduser().open("rb") as fh:
            raw = fh.read(MAX_SECRET_BYTES + 1)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(f"{variable}: cannot read {path}: {reason}.") from None
    if len(raw) > MAX_SECRET_BYTES:
        raise ConfigError(f"{variable}: {path} is larger than a secret can be (64 KiB).")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{variable}: {path} is not UTF-8 text.") from None
    value = text.strip()
    if not value:
        raise ConfigError(f"{variable}: {path} is empty.")
    return value
