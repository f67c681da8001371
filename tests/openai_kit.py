"""The gateway wired to a loopback OpenAI double, and the real `openai` SDK pointed at the
gateway: what every test of the OpenAI-compatible API starts from."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import openai
import pytest

from open_clanker.config.model import Config
from tests.doubles.openai_double import OpenAIDouble
from tests.harness import RunningGateway, running_gateway

UPSTREAM_KEY = "sk-upstream-test"
CONFIGURED_PROMPT = "You are a helpful AI assistant."


@dataclass
class Rig:
    gw: RunningGateway
    double: OpenAIDouble
    client: openai.AsyncOpenAI

    @property
    def v1(self) -> str:
        return f"{self.gw.base_url}/v1"

    def sent(self, n: int = -1) -> dict[str, Any]:
        """The body of the n-th request the upstream double received."""
        return self.double.requests[n].body


def sdk(gw: RunningGateway, api_key: str | None = None) -> openai.AsyncOpenAI:
    # No SDK retries: each test sees exactly the answer the gateway gave.
    return openai.AsyncOpenAI(
        base_url=f"{gw.base_url}/v1", api_key=api_key or gw.token, max_retries=0
    )


def config_for(double: OpenAIDouble, **sections: dict[str, Any]) -> Config:
    agent = {"provider": "openai", "base_url": double.base_url, "model": "gpt-up", "max_retries": 0}
    agent.update(sections.pop("agent", {}))
    return Config.model_validate({"agent": agent, **sections})


@contextlib.asynccontextmanager
async def rig(monkeypatch: pytest.MonkeyPatch, **sections: dict[str, Any]) -> AsyncIterator[Rig]:
    monkeypatch.setenv("OPENCLAW_OPENAI_API_KEY", UPSTREAM_KEY)
    async with OpenAIDouble(api_key=UPSTREAM_KEY) as double:
        async with running_gateway(config_for(double, **sections)) as gw, sdk(gw) as client:
            yield Rig(gw, double, client)


def roles_and_texts(body: dict[str, Any]) -> list[tuple[str, Any]]:
    return [(m["role"], m["content"]) for m in body["messages"]]
