"""The `[channels.telegram]` section (present = enabled)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, SecretStr


class TelegramConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bot_token: SecretStr = SecretStr("")
    allowed_chats: list[int | str] = []
    api_base_url: str = "https://api.telegram.org"
    mode: Literal["polling", "webhook"] = "polling"
    webhook_url: str = ""
    webhook_secret: SecretStr = SecretStr("")
