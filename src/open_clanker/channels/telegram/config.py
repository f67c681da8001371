"""The `[channels.telegram]` section (present = enabled)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, SecretStr, field_validator


class TelegramConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bot_token: SecretStr = SecretStr("")
    allowed_chats: list[int | str] = []
    api_base_url: str = "https://api.telegram.org"
    mode: Literal["polling", "webhook"] = "polling"
    webhook_url: str = ""
    webhook_secret: SecretStr = SecretStr("")

    @field_validator("webhook_secret")
    @classmethod
    def _telegram_accepts(cls, value: SecretStr) -> SecretStr:
        # setWebhook refuses anything else, and only once the gateway is running.
        secret = value.get_secret_value()
        if secret and not _SECRET_CHARS.fullmatch(secret):
            raise ValueError("use 1-256 characters from A-Z a-z 0-9 _ - (Telegram's rule)")
        return value


_SECRET_CHARS = re.compile(r"[A-Za-z0-9_-]{1,256}")
