"""Channels: platform adapters that turn platform events into Messages and deliver replies."""

from open_clanker.channels.base import (
    Channel,
    ChannelHealth,
    Channels,
    ChannelState,
    Submit,
    SupportsTyping,
)

__all__ = ["Channel", "ChannelHealth", "ChannelState", "Channels", "Submit", "SupportsTyping"]
