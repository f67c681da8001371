"""A pipeline wired like the gateway's, with a recording chat channel and scriptable provider."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from open_clanker.agent.base import ProviderRequest, StreamDone, StreamEvent, TextDelta
from open_clanker.agent.chain import ProviderChain
from open_clanker.channels.base import ChannelHealth, Channels, Submit
from open_clanker.config.model import Config
from open_clanker.core.errors import ChannelError, ProviderError
from open_clanker.core.types import (
    AgentResponse,
    Attachment,
    ChannelType,
    Inbound,
    Message,
    session_key,
)
from open_clanker.pipeline import MemoryBus, OutboxWorker, Pipeline, build_pipeline
from open_clanker.pipeline.replica import Heartbeat, Replica, new_replica_id
from open_clanker.pipeline.sweeper import RecoverySweep
from open_clanker.storage.outbox import OutboxItem
from open_clanker.storage.store import Store


class ScriptedProvider:
    """Answers "reply to: <last user text>", records every request, can be told to fail."""

    name = "scripted"
    model = "scripted-1"

    def __init__(self) -> None:
        self.requests: list[ProviderRequest] = []
        self.failures: list[ProviderError] = []

    async def complete(self, request: ProviderRequest) -> AgentResponse:
        self.requests.append(request)
        if self.failures:
            raise self.failures.pop(0)
        return AgentResponse(
            content=f"reply to: {request.turns[-1].text}", model=self.model, provider=self.name
        )

    async def stream(self, request: ProviderRequest) -> AsyncIterator[StreamEvent]:
        response = await self.complete(request)
        yield TextDelta(response.content)
        yield StreamDone(response)


@dataclass
class RecordingChannel:
    """A chat platform adapter that records what it would have sent."""

    type: ChannelType = ChannelType.TELEGRAM
    health: ChannelHealth = field(default_factory=ChannelHealth)
    sent: list[OutboxItem] = field(default_factory=list)
    failures: list[ChannelError] = field(default_factory=list)
    limit: int = 4096
    bot_username: str | None = "clanker_bot"
    delivered: asyncio.Event = field(default_factory=asyncio.Event)

    def split(self, text: str) -> list[str]:
        return [text[i : i + self.limit] for i in range(0, len(text), self.limit)] or [""]

    async def send(self, item: OutboxItem) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(item)
        self.delivered.set()

    async def start(self, submit: Submit) -> None:
        self.health.contact()

    async def stop(self) -> None:
        return None

    async def fetch_attachment(self, attachment: Attachment) -> Attachment | None:
        if attachment.url == "platform-file:missing":
            return None
        return attachment.model_copy(update={"url": "data:image/png;base64,iVBORw0KGgo="})

    def texts(self, chat_id: str | None = None) -> list[str]:
        return [i.text for i in self.sent if chat_id is None or i.channel_id == chat_id]


@dataclass
class Kit:
    store: Store
    pipeline: Pipeline
    channel: RecordingChannel
    provider: ScriptedProvider
    worker: OutboxWorker
    bus: MemoryBus
    sweep: RecoverySweep

    async def deliver(self) -> None:
        """Run the outbox until nothing is due now."""
        await self.worker.deliver_due()

    async def recover(self) -> tuple[int, int]:
        """One recovery sweep, then wait for the turns it started."""
        resumed, expired = await self.sweep.sweep_once()
        await wait_for(lambda: self.pipeline.in_flight == 0)
        return resumed, expired


async def make_kit(
    tmp_path: Path, config: Config | None = None, provider: ScriptedProvider | None = None
) -> Kit:
    config = config or Config()
    store = await Store.open(f"sqlite:///{tmp_path}/kit.db")
    channel = RecordingChannel()
    channels = Channels({ChannelType.TELEGRAM: channel})  # type: ignore[dict-item]
    provider = provider or ScriptedProvider()
    chain = ProviderChain([provider], max_retries=0, sleep=_no_sleep)
    bus = MemoryBus()
    replica = Replica(new_replica_id(), config.limits.lease_s, contested=False)
    worker = OutboxWorker(store, channels, replica, Heartbeat(store.claims, replica), bus)
    pipeline = build_pipeline(
        config,
        store,
        bus,
        chain,
        channels,
        bot_username=lambda _c: "clanker_bot",
        replica=replica,
    )
    sweep = RecoverySweep(store, pipeline, ["telegram"], config.limits.recovery_max_age_s)
    return Kit(store, pipeline, channel, provider, worker, bus, sweep)


async def _no_sleep(_s: float) -> None:
    return None


def tg_inbound(
    text: str,
    *,
    chat: str = "100",
    sender: str = "100",
    message_id: int = 1,
    direct: bool = True,
    addressed: bool = True,
) -> Inbound:
    msg = Message(
        channel_type=ChannelType.TELEGRAM,
        channel_id=chat,
        sender=sender,
        text=text,
        session=session_key(ChannelType.TELEGRAM, chat),
    )
    return Inbound(
        message=msg,
        platform_id=f"{chat}:{message_id}",
        is_direct=direct,
        addressed=addressed,
        reply_target=None if direct else str(message_id),
    )


async def wait_for(cond: Callable[[], bool | Awaitable[bool]], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = cond()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)
