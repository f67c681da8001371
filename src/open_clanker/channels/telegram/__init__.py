"""The Telegram channel (python-telegram-bot): updates in, HTML replies out.

Names resolve lazily: `config` is read by the config loader on every start, and must not pull
in python-telegram-bot unless the channel is enabled.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from open_clanker.channels.telegram.adapter import PollTiming, TelegramChannel
    from open_clanker.channels.telegram.config import TelegramConfig

__all__ = ["PollTiming", "TelegramChannel", "TelegramConfig"]


def __getattr__(name: str) -> Any:
    if name in ("PollTiming", "TelegramChannel"):
        from open_clanker.channels.telegram import adapter

        return getattr(adapter, name)
    if name == "TelegramConfig":
        from open_clanker.channels.telegram.config import TelegramConfig

        return TelegramConfig
    raise AttributeError(name)
