"""Every secret a config and its environment hold, for the log redactor (start and reload)."""

from __future__ import annotations

from collections.abc import Mapping

from open_clanker.agent.select import KEY_ENV_NAMES
from open_clanker.config.model import Config
from open_clanker.core.errors import ConfigError
from open_clanker.core.secret_env import secret_from_env
from open_clanker.gateway.tokens import read_token_file


def secret_values(config: Config, env: Mapping[str, str]) -> list[str]:
    """Every secret this config and environment hold, for the log redactor."""
    values = [t.get_secret_value() for t in config.server.auth_tokens]
    channels = config.channels
    for ch in (channels.telegram, channels.discord, channels.slack):
        if ch is not None:
            values.append(ch.bot_token.get_secret_value())
    if channels.telegram is not None:
        values.append(channels.telegram.webhook_secret.get_secret_value())
    if channels.slack is not None:
        values.append(channels.slack.app_token.get_secret_value())
        values.append(channels.slack.signing_secret.get_secret_value())
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
