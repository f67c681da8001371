"""The one place the pipeline is put together, top to bottom (SPEC §2's order)."""

from __future__ import annotations

from collections.abc import Callable

from open_clanker.agent.chain import ProviderChain
from open_clanker.channels.base import Channels
from open_clanker.config.model import Config
from open_clanker.pipeline.access import PairingDesk, StaticAllowList
from open_clanker.pipeline.bus import EventBus
from open_clanker.pipeline.context_windows import ContextWindows
from open_clanker.pipeline.pipeline import Pipeline
from open_clanker.pipeline.ratelimit import RateLimiter, limiter_for
from open_clanker.pipeline.replica import Replica, new_replica_id
from open_clanker.pipeline.stages import (
    AccessCheck,
    Dedupe,
    Limits,
    ModelCall,
    SessionStage,
    Stage,
    StatusFacts,
    StoreInbound,
)
from open_clanker.pipeline.stopping import Stopper
from open_clanker.storage.store import Store


def static_allow_entries(config: Config) -> list[str]:
    entries = list(config.access.allow)
    if config.channels.telegram is not None:
        entries += [f"telegram:{c}" for c in config.channels.telegram.allowed_chats]
    if config.channels.discord is not None:
        entries += [f"discord:{c}" for c in config.channels.discord.allowed_channels]
    if config.channels.slack is not None:
        entries += [f"slack:{c}" for c in config.channels.slack.allowed_channels]
    return entries


def build_stages(
    config: Config,
    store: Store,
    bus: EventBus,
    chain: ProviderChain,
    channels: Channels,
    stopper: Stopper,
    bot_username: Callable[[str], str | None] = lambda _channel: None,
    limiter: RateLimiter | None = None,
) -> tuple[list[Stage], list[Stage]]:
    """The intake and turn stages for `config`; at start, and again at each reload (which
    passes the pipeline's `stopper` and the running `limiter`, so /stop and senders' counts
    carry over)."""

    def status() -> StatusFacts:
        return StatusFacts(chain.primary.name, chain.primary.model)

    if limiter is None:  # counted in Redis when the bus is Redis (every replica together)
        limiter = limiter_for(bus, config.bus.namespace, config.limits.messages_per_minute)
    limiter.per_minute = config.limits.messages_per_minute
    # Before storage: every message, as it arrives.
    intake: list[Stage] = [
        Dedupe(store),
        AccessCheck(config.access.dm_policy, StaticAllowList(static_allow_entries(config)), store),
        Limits(limiter, config.server.max_message_chars),
        StoreInbound(store, bus),
    ]
    # The session's turn: one at a time per session, in the order messages were stored.
    windows = ContextWindows()  # what each provider's overflow errors said it holds
    turn: list[Stage] = [
        SessionStage(
            store,
            config.agent.history_messages,
            status,
            bot_username,
            history_tokens=config.agent.history_tokens,
            system_prompt=config.agent.system_prompt,
            windows=windows,
        ),
        ModelCall(
            chain,
            channels,
            config.agent.system_prompt,
            config.agent.max_tokens,
            config.agent.stream,
            stopper,
            windows,
        ),
    ]
    return intake, turn


def build_pipeline(
    config: Config,
    store: Store,
    bus: EventBus,
    chain: ProviderChain,
    channels: Channels,
    bot_username: Callable[[str], str | None] = lambda _channel: None,
    replica: Replica | None = None,
) -> Pipeline:
    """`replica`: this process's identity for claims; by default one that nobody contests
    (a single process on SQLite)."""
    stopper = Stopper(bot_username)
    intake, turn = build_stages(config, store, bus, chain, channels, stopper, bot_username)
    replica = replica or Replica(new_replica_id(), config.limits.lease_s, contested=False)
    return Pipeline(
        intake, turn, store, bus, channels, replica, PairingDesk(store.access), stopper=stopper
    )
