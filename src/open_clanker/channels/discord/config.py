"""The `[channels.discord]` section (present = enabled)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, SecretStr, field_validator


class DiscordConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bot_token: SecretStr = SecretStr("")
    guild_id: str = ""
    allowed_channels: list[int | str] = []
    require_mention: bool = True
    api_base_url: str = "https://discord.com/api/v10"

    @field_validator("guild_id", mode="before")
    @classmethod
    def _snowflake_as_text(cls, value: object) -> object:
        # Ids are often written as TOML numbers; Discord snowflakes fit in an int64.
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value
