"""The `[agent]` section: which model to call, how, and what to fall back to."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ProviderName = Literal["auto", "anthropic", "openai", "echo"]


class FallbackConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    provider: Literal["anthropic", "openai", "echo"]
    model: str = ""
    api_key_env: str = ""
    base_url: str = ""


class AgentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    provider: ProviderName = "auto"
    model: str = ""
    api_key_env: str = ""
    base_url: str = ""
    system_prompt: str = "You are a helpful AI assistant."
    max_tokens: int = Field(1024, ge=1, le=1_000_000)
    timeout_s: float = Field(120, gt=0, le=3600)
    max_retries: int = Field(2, ge=0, le=10)
    history_messages: int = Field(40, ge=1, le=1000)
    history_tokens: int = Field(24000, ge=100, le=10_000_000)
    stream: bool = True
    fallbacks: list[FallbackConfig] = []
