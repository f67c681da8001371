"""Channels: platform adapters that turn platform events into Messages and deliver replies.

Names resolve lazily so that reading an adapter's small config (at every start) does not
import the pipeline's storage types or any platform library.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from open_clanker.channels.base import (
        Channel,
        ChannelHealth,
        Channels,
        ChannelState,
        Submit,
        SupportsAttachments,
        SupportsTyping,
    )

__all__ = [
    "Channel",
    "ChannelHealth",
    "ChannelState",
    "Channels",
    "Submit",
    "SupportsAttachments",
    "SupportsTyping",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from open_clanker.channels import base

        return getattr(base, name)
    raise AttributeError(name)
