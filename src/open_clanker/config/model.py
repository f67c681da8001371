"""The whole configuration as typed sections (SPEC §4.1). Every key has a default."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from open_clanker.agent.config import AgentConfig
from open_clanker.channels.discord.config import DiscordConfig
from open_clanker.channels.slack.config import SlackConfig
from open_clanker.channels.telegram.config import TelegramConfig


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TLSConfig(_Section):
    cert_path: str = ""
    key_path: str = ""


class ServerConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(18789, ge=0, le=65535)
    auth_tokens: list[SecretStr] = []
    allowed_hosts: list[str] = []
    trusted_proxies: list[str] = []
    cors_origins: list[str] = []
    max_message_chars: int = Field(16000, ge=1, le=1_000_000)
    max_ws_connections: int = Field(10000, ge=1)
    # Open connections (HTTP and WebSocket) from one client address; trusted proxies are not
    # counted. Past it a new connection gets 429 and is closed.
    max_connections_per_address: int = Field(256, ge=1)
    openai_api: bool = True  # POST /v1/chat/completions and GET /v1/models (SPEC §5.1)
    compression: bool = True  # gzip for JSON and the page, never for streams
    tls: TLSConfig | None = None


class StorageConfig(_Section):
    url: str = ""  # empty: sqlite in the data dir


class BusConfig(_Section):
    url: str = "memory://"
    # Prefix of every Redis key and pub/sub channel: deployments sharing one Redis each
    # take their own (pub/sub channels are not separated by Redis database numbers).
    namespace: str = Field(
        "open-clanker", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$"
    )


class AccessConfig(_Section):
    dm_policy: Literal["pairing", "allowlist", "open"] = "pairing"
    allow: list[str] = []


class LimitsConfig(_Section):
    messages_per_minute: int = Field(20, ge=1)
    recovery_max_age_s: float = Field(3600, ge=0)
    # How long a replica's claim on a session, a pending message, an outbox part or a channel
    # lasts without renewal (SPEC §9); a dead replica's work moves on after it.
    lease_s: float = Field(30, ge=3, le=3600)


class WebchatConfig(_Section):
    enabled: bool = True


class ChannelsConfig(_Section):
    webchat: WebchatConfig = WebchatConfig()
    telegram: TelegramConfig | None = None
    discord: DiscordConfig | None = None
    slack: SlackConfig | None = None


class LoggingConfig(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["pretty", "json"] = "pretty"
    file: str = ""


class Config(_Section):
    server: ServerConfig = ServerConfig()
    storage: StorageConfig = StorageConfig()
    bus: BusConfig = BusConfig()
    agent: AgentConfig = AgentConfig()
    access: AccessConfig = AccessConfig()
    limits: LimitsConfig = LimitsConfig()
    channels: ChannelsConfig = ChannelsConfig()
    logging: LoggingConfig = LoggingConfig()
