"""The Slack channel (slack_sdk): Socket Mode or the Events API in, mrkdwn replies out.

Names resolve lazily: `config` is read by the config loader on every start, and must not pull
in slack_sdk unless the channel is enabled.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from open_clanker.channels.slack.adapter import SlackChannel, SlackTiming
    from open_clanker.channels.slack.config import SlackConfig

__all__ = ["SlackChannel", "SlackConfig", "SlackTiming"]


def __getattr__(name: str) -> Any:
    if name in ("SlackChannel", "SlackTiming"):
        from open_clanker.channels.slack import adapter

        return getattr(adapter, name)
    if name == "SlackConfig":
        from open_clanker.channels.slack.config import SlackConfig

        return SlackConfig
    raise AttributeError(name)
