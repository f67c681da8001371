"""Build the provider chain from `[agent]`: the chosen provider, then each fallback."""

from __future__ import annotations

from collections.abc import Mapping

import aiohttp

from open_clanker.agent.base import Provider
from open_clanker.agent.chain import ProviderChain
from open_clanker.agent.config import AgentConfig
from open_clanker.agent.echo import EchoProvider
from open_clanker.agent.http import probe_openai_compatible
from open_clanker.agent.select import ProviderChoice, choose_provider, resolve_fallback


def make_provider(
    choice: ProviderChoice, config: AgentConfig, http: aiohttp.ClientSession
) -> Provider:
    if choice.name == "anthropic":
        from open_clanker.agent.anthropic import AnthropicProvider

        return AnthropicProvider(choice, http, timeout_s=config.timeout_s)
    if choice.name == "openai":
        from open_clanker.agent.openai import OpenAIProvider

        return OpenAIProvider(choice, http, timeout_s=config.timeout_s)
    return EchoProvider(choice.model)


async def build_chain(
    config: AgentConfig, http: aiohttp.ClientSession, env: Mapping[str, str] | None = None
) -> tuple[ProviderChain, ProviderChoice]:
    async def probe(url: str) -> bool:
        return await probe_openai_compatible(http, url)

    choice = await choose_provider(config, probe, env)
    providers = [make_provider(choice, config, http)]
    for fb in config.fallbacks:
        providers.append(make_provider(resolve_fallback(fb, env), config, http))
    return ProviderChain(providers, config.max_retries), choice
