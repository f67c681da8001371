"""Every secret the process knows, handed to the redactor before anything could log it:
each `SecretStr` in the config (tokens, channel secrets), the provider keys' variables (and
their `_FILE` forms), and the generated gateway token. At start and at each reload."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import BaseModel, SecretStr

from open_clanker.agent.select import KEY_ENV_NAMES
from open_clanker.config.model import Config
from open_clanker.core.errors import ConfigError
from open_clanker.core.logging import REDACTOR
from open_clanker.core.secret_env import secret_from_env
from open_clanker.gateway.tokens import read_token_file


def _secrets_in(value: Any) -> Iterator[str]:
    """Walks models, lists and dicts: a secret field added later is covered without a change."""
    if isinstance(value, SecretStr):
        yield value.get_secret_value()
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _secrets_in(getattr(value, name))
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _secrets_in(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _secrets_in(item)


def secret_values(config: Config, env: Mapping[str, str] | None = None) -> list[str]:
    env = os.environ if env is None else env
    values = list(_secrets_in(config))
    names = [n for names in KEY_ENV_NAMES.values() for n in names]
    names += [config.agent.api_key_env] + [f.api_key_env for f in config.agent.fallbacks]
    for name in names:
        if name:
            try:
                values.append(secret_from_env(env, name))
            except ConfigError:
                continue  # named when the provider is chosen; nothing to redact meanwhile
    values.append(read_token_file() or "")
    return [v for v in values if v]


def register_secrets(config: Config, *extra: str) -> None:
    """Teach the redactor (logs and error bodies sent to clients) every secret above."""
    REDACTOR.add([*secret_values(config), *extra])
