"""Build the enabled push channels. Platform libraries are imported only when enabled."""

from __future__ import annotations

from open_clanker.channels.base import Channel
from open_clanker.config.model import Config
from open_clanker.core.types import ChannelType


def build_channels(config: Config) -> dict[ChannelType, Channel]:
    channels: dict[ChannelType, Channel] = {}
    if config.channels.telegram is not None:
        from open_clanker.channels.telegram.adapter import TelegramChannel

        channels[ChannelType.TELEGRAM] = TelegramChannel(config.channels.telegram)
    if config.channels.discord is not None:
        from open_clanker.channels.discord.adapter import DiscordChannel

        channels[ChannelType.DISCORD] = DiscordChannel(config.channels.discord)
    return channels
