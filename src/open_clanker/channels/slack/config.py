"""The `[channels.slack]` section (present = enabled)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, SecretStr

# Where the Events API posts (mode = "events"): the Request URL to give Slack is
# https://<public name><EVENTS_PATH>.
EVENTS_PATH = "/slack/events"


class SlackConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bot_token: SecretStr = SecretStr("")  # xoxb-…
    app_token: SecretStr = SecretStr("")  # xapp-…, Socket Mode only
    mode: Literal["socket", "events"] = "socket"
    signing_secret: SecretStr = SecretStr("")  # Events API only
    allowed_channels: list[str] = []
    require_mention: bool = True
    api_base_url: str = "https://slack.com/api"
