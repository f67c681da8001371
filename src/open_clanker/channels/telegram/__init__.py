"""The Telegram channel (python-telegram-bot): updates in, HTML replies out."""

from open_clanker.channels.telegram.adapter import PollTiming, TelegramChannel
from open_clanker.channels.telegram.config import TelegramConfig

__all__ = ["PollTiming", "TelegramChannel", "TelegramConfig"]
