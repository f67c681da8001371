"""Build the enabled push channels. Platform libraries are imported only when enabled."""

from __future__ import annotations

from typing import TYPE_CHECKING

from open_clanker.channels.base import Channel
from open_clanker.config.model import Config
from open_clanker.core.types import ChannelType, SessionKey

if TYPE_CHECKING:
    from open_clanker.storage.store import Store


def build_channels(config: Config, store: Store | None = None) -> dict[ChannelType, Channel]:
    channels: dict[ChannelType, Channel] = {}
    if config.channels.telegram is not None:
        from open_clanker.channels.telegram.adapter import TelegramChannel

        channels[ChannelType.TELEGRAM] = TelegramChannel(config.channels.telegram)
    if config.channels.discord is not None:
        from open_clanker.channels.discord.adapter import DiscordChannel

        channels[ChannelType.DISCORD] = DiscordChannel(config.channels.discord)
    if config.channels.slack is not None:
        from open_clanker.channels.slack.adapter import SlackChannel

        if store is None:
            channels[ChannelType.SLACK] = SlackChannel(config.channels.slack)
        else:
            messages = store.messages

            async def answered_in(key: SessionKey) -> bool:
                # A thread's session exists once the bot accepted a message in it.
                return await messages.session_messages(key, 1) is not None

            channels[ChannelType.SLACK] = SlackChannel(config.channels.slack, threads=answered_in)
    return channels
