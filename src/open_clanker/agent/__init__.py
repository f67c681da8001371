"""Agent: model providers behind one interface, with retries and fallbacks."""

from open_clanker.agent.base import (
    Provider,
    ProviderRequest,
    StreamDone,
    StreamEvent,
    StreamReset,
    TextDelta,
)
from open_clanker.agent.chain import ProviderChain
from open_clanker.agent.config import AgentConfig, FallbackConfig
from open_clanker.agent.echo import EchoProvider
from open_clanker.agent.select import ProviderChoice

__all__ = [
    "AgentConfig",
    "EchoProvider",
    "FallbackConfig",
    "Provider",
    "ProviderChain",
    "ProviderChoice",
    "ProviderRequest",
    "StreamDone",
    "StreamEvent",
    "StreamReset",
    "TextDelta",
]
