"""The `[channels.discord]` section (present = enabled)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, SecretStr


class DiscordConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bot_token: SecretStr = SecretStr("")
    guild_id: str = ""
    allowed_channels: list[int | str] = []
    require_mention: bool = True
    api_base_url: str = "https://discord.com/api/v10"
