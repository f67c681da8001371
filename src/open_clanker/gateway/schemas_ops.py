"""Wire shapes of the probes and the operations routes (`/ready`, status, reload, tokens)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from open_clanker.gateway.rotation import MAX_GRACE_S


class _Open(BaseModel):
    # Responses may grow fields; a client reads what it knows.
    model_config = ConfigDict(extra="allow")


class ChannelStatus(_Open):
    state: Literal["starting", "connected", "degraded", "stopped"]
    last_contact: str | None = Field(description="ISO 8601 time of the last platform contact")
    detail: str = ""
    receiving: bool = Field(True, description="False on a standby replica (SPEC §9)")
    receiver: str | None = Field(None, description="The replica receiving this connection")


class StorageReady(_Open):
    ok: bool


class ProviderInfo(_Open):
    name: str
    model: str


class ReadyResponse(_Open):
    status: Literal["ready", "degraded", "not_ready"]
    replica: str = Field(description="This replica's id")
    storage: StorageReady
    provider: ProviderInfo
    channels: dict[str, ChannelStatus]


class ProviderStatus(ProviderInfo):
    reason: str = Field(description="Why this provider was chosen")
    fallbacks: list[str] = Field(description='"<provider>/<model>", tried in order')


class StorageStatus(_Open):
    backend: Literal["sqlite", "postgresql"]


class StatusResponse(_Open):
    version: str
    uptime_s: float
    provider: ProviderStatus
    channels: dict[str, ChannelStatus]
    storage: StorageStatus
    replica: str = Field(description="This replica's id")
    in_flight: int = Field(description="Messages being processed now")
    counts: dict[str, int] = Field(description="Stored messages by status, outbox_pending")


class ReloadResponse(BaseModel):
    status: Literal["applied", "unchanged"]
    applied: list[str] = Field(description="Key paths applied now")
    restart_required: list[str] = Field(description="Key paths that differ but need a restart")


class RotateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grace_s: float = Field(
        86400, ge=0, le=MAX_GRACE_S, description="How long the older tokens stay valid"
    )


class RotatedToken(BaseModel):
    id: str
    token: str = Field(description="The new token; shown only in this answer")
    created_at: str
    others_expire_at: str
    token_file_updated: bool = Field(description="The data dir's gateway.token holds it now")


class TokenInfo(BaseModel):
    id: str
    origin: Literal["rotated", "generated"]
    created_at: str
    expires_at: str | None
    state: Literal["active", "expiring", "expired"]


class TokenList(BaseModel):
    tokens: list[TokenInfo]
    configured: int = Field(description="Tokens from the config or OPENCLAW_GATEWAY_TOKEN")
