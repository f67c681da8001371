"""Which provider to use (SPEC §4.3) and where its key comes from; decided once, at start."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from open_clanker.agent.config import AgentConfig, FallbackConfig
from open_clanker.core.errors import ConfigError
from open_clanker.core.secret_env import secret_from_env

OLLAMA_URL = "http://127.0.0.1:11434/v1"

# Env names tried in order when `api_key_env` is empty: the seed's names, then the vendors' own.
KEY_ENV_NAMES: dict[str, tuple[str, ...]] = {
    "anthropic": ("OPENCLAW_ANTHROPIC_API_KEY", "ANTHROPIC_API_KEY"),
    "openai": ("OPENCLAW_OPENAI_API_KEY", "OPENAI_API_KEY"),
}

DEFAULT_MODELS: dict[str, str] = {
    "anthropic": "claude-sonnet-4-5",
    "openai": "gpt-4o-mini",
    "echo": "echo",
}

DEFAULT_BASE_URLS: dict[str, str] = {
    "anthropic": "https://api.anthropic.com",
    "openai": "https://api.openai.com/v1",
    "echo": "",
}


@dataclass(frozen=True, slots=True)
class ProviderChoice:
    """One provider, fully resolved. `api_key` is a secret: never log or print this object."""

    name: str
    model: str
    base_url: str
    api_key: str
    reason: str

    def __repr__(self) -> str:  # keeps the key out of any accidental log line
        return (
            f"ProviderChoice(name={self.name!r}, model={self.model!r}, base_url={self.base_url!r})"
        )


Probe = Callable[[str], Awaitable[bool]]


def find_key(provider: str, api_key_env: str, env: Mapping[str, str]) -> tuple[str, str]:
    """Returns (key, the env name it came from); ('', '') when none is set."""
    names = (api_key_env,) if api_key_env else KEY_ENV_NAMES.get(provider, ())
    for name in names:
        value = secret_from_env(env, name)  # NAME, or NAME_FILE naming a file that holds it
        if value:
            return value, name
    return "", ""


def _resolve(
    name: str, model: str, base_url: str, api_key_env: str, env: Mapping[str, str], reason: str
) -> ProviderChoice:
    key = ""
    if name in KEY_ENV_NAMES:
        key, source = find_key(name, api_key_env, env)
        # A custom base_url may point at a keyless local server (Ollama, vLLM); the vendor's
        # own endpoint always needs a key.
        if not key and not base_url:
            tried = api_key_env or " or ".join(KEY_ENV_NAMES[name])
            raise ConfigError(f"agent: provider {name!r} needs an API key; set {tried}.")
        reason += f", key from {source}" if key else ", no key (a local server)"
    return ProviderChoice(
        name=name,
        model=model or DEFAULT_MODELS[name],
        base_url=(base_url or DEFAULT_BASE_URLS[name]).rstrip("/"),
        api_key=key,
        reason=reason,
    )


async def choose_provider(
    config: AgentConfig, probe: Probe, env: Mapping[str, str] | None = None
) -> ProviderChoice:
    env = os.environ if env is None else env
    if config.provider != "auto":
        return _resolve(
            config.provider,
            config.model,
            config.base_url,
            config.api_key_env,
            env,
            f"agent.provider = {config.provider!r}",
        )
    for name in ("anthropic", "openai"):
        key, _ = find_key(name, config.api_key_env, env)
        if key:
            reason = f"agent.provider = 'auto' and an {name} key is set"
            return _resolve(name, config.model, config.base_url, config.api_key_env, env, reason)
    if await probe(OLLAMA_URL):
        return ProviderChoice(
            name="openai",
            model=config.model or "llama3.2",
            base_url=OLLAMA_URL,
            api_key="",
            reason=(
                "agent.provider = 'auto', no key is set, and a local OpenAI-compatible server "
                f"answers at {OLLAMA_URL}"
            ),
        )
    return ProviderChoice(
        name="echo",
        model="echo",
        base_url="",
        api_key="",
        reason=(
            "agent.provider = 'auto', no Anthropic or OpenAI key is set and no local model "
            f"server answers at {OLLAMA_URL}: replies are a labelled echo"
        ),
    )


def resolve_fallback(fb: FallbackConfig, env: Mapping[str, str] | None = None) -> ProviderChoice:
    env = os.environ if env is None else env
    return _resolve(fb.provider, fb.model, fb.base_url, fb.api_key_env, env, "fallback")
