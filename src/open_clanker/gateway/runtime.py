"""The gateway's object graph: config, store, bus, providers, channels, pipeline, outbox.

Built once at start, torn down at stop. Everything the HTTP layer needs hangs off it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import structlog
from sqlalchemy.exc import SQLAlchemyError

from open_clanker import __version__
from open_clanker.agent.chain import ProviderChain
from open_clanker.agent.factory import build_chain
from open_clanker.agent.http import make_http_session
from open_clanker.agent.select import ProviderChoice
from open_clanker.channels.base import Channel, ChannelHealth, Channels, ChannelState
from open_clanker.channels.registry import build_channels
from open_clanker.config.model import Config
from open_clanker.config.paths import default_storage_url
from open_clanker.core.errors import NotReadyError
from open_clanker.core.types import ChannelType
from open_clanker.gateway.instance_lock import InstanceLock
from open_clanker.gateway.lockout import AuthLockout, lockout_for
from open_clanker.gateway.metrics import GatewayMetrics
from open_clanker.gateway.rotation import TokenRotation, start_rotation
from open_clanker.gateway.secrets import register_secrets
from open_clanker.gateway.tokens import Tokens
from open_clanker.pipeline.assemble import build_pipeline
from open_clanker.pipeline.bus import EventBus
from open_clanker.pipeline.outbox_worker import OutboxWorker
from open_clanker.pipeline.pipeline import Pipeline
from open_clanker.pipeline.pruner import Pruner
from open_clanker.pipeline.receiver_lease import ExclusiveReceiver, ReceiverLease, needs_lease
from open_clanker.pipeline.redis_bus import open_bus
from open_clanker.pipeline.replica import Heartbeat, Replica, new_replica_id
from open_clanker.pipeline.sweeper import RecoverySweep
from open_clanker.storage.store import Store

log = structlog.get_logger("open_clanker.gateway")

SHUTTING_DOWN_TEXT = "The gateway is shutting down; please retry shortly."
OUTBOX_FLUSH_TIMEOUT_S = 10.0


def _open_websockets() -> int:
    try:
        from open_clanker.gateway.ws import open_ws_connections
    except ImportError:
        return 0
    return open_ws_connections()


@dataclass
class Runtime:
    config: Config
    tokens: Tokens
    store: Store
    bus: EventBus
    http: aiohttp.ClientSession
    chain: ProviderChain
    choice: ProviderChoice
    channels: Channels
    pipeline: Pipeline
    outbox: OutboxWorker
    replica: Replica
    heartbeat: Heartbeat
    sweep: RecoverySweep
    pruner: Pruner
    leases: dict[ChannelType, ReceiverLease] = field(default_factory=dict)
    instance_lock: InstanceLock | None = None
    rotation: TokenRotation | None = None  # `token rotate` (gateway/rotation.py)
    started_at: float = field(default_factory=time.time)
    shutting_down: bool = False
    webchat_health: ChannelHealth = field(default_factory=ChannelHealth)
    lockout: AuthLockout = field(default_factory=AuthLockout)
    metrics: GatewayMetrics = field(default_factory=lambda: GatewayMetrics(_open_websockets))
    _background: set[asyncio.Task[object]] = field(default_factory=set)

    @classmethod
    async def start(cls, config: Config, tokens: Tokens) -> Runtime:
        register_secrets(config, *tokens.values)  # before any line of ours could carry one
        url = config.storage.url or default_storage_url()
        lock = InstanceLock.for_storage_url(url)
        if lock is not None:
            lock.acquire()
        try:
            store = await Store.open(url, config.limits.lease_s)
        except BaseException:
            if lock is not None:
                lock.release()
            raise
        replica = Replica(new_replica_id(), config.limits.lease_s, contested=lock is None)
        log.info("storage_ready", backend=store.backend, replica=replica.id)
        http = make_http_session()
        try:
            if not replica.contested:
                # This process owns the database: whatever the previous run held is free, and
                # its unanswered messages are answered at once.
                await store.claims.release_everything()
            chain, choice = await build_chain(config.agent, http)
            bus = await open_bus(config.bus.url, config.bus.namespace)
        except BaseException:
            await http.close()
            await store.close()
            if lock is not None:
                lock.release()
            raise
        log.info("provider_chosen", provider=choice.name, model=choice.model, reason=choice.reason)
        channels = Channels(build_channels(config, store))
        log.info("bus_ready", kind="redis" if config.bus.url.startswith("redis") else "memory")
        heartbeat = Heartbeat(store.claims, replica)

        def bot_username(channel: str) -> str | None:
            adapter = channels.get(channel)
            return getattr(adapter, "bot_username", None) if adapter else None

        pipeline = build_pipeline(
            config, store, bus, chain, channels, bot_username=bot_username, replica=replica
        )
        runtime = cls(
            config=config,
            tokens=tokens,
            store=store,
            bus=bus,
            http=http,
            chain=chain,
            choice=choice,
            channels=channels,
            pipeline=pipeline,
            outbox=OutboxWorker(store, channels, replica, heartbeat, bus),
            replica=replica,
            heartbeat=heartbeat,
            sweep=RecoverySweep(
                store,
                pipeline,
                [c.type.value for c in channels],
                config.limits.recovery_max_age_s,
            ),
            pruner=Pruner(store),
            instance_lock=lock,
            lockout=lockout_for(bus, config.bus.namespace),
        )
        runtime.metrics.attach(pipeline, chain, runtime.outbox, runtime.channel_health)
        runtime.rotation = await start_rotation(store, tokens, bus)  # rotated tokens (ops)
        if config.channels.webchat.enabled:
            runtime.webchat_health.contact()
        heartbeat.start()
        runtime.outbox.start()
        for channel in channels:
            if needs_lease(channel):
                assert isinstance(channel, ExclusiveReceiver)
                runtime.leases[channel.type] = ReceiverLease(
                    channel, store.claims, replica, heartbeat
                )
            runtime._spawn(runtime._start_channel(channel))
        runtime.sweep.start()
        runtime.pruner.start()
        return runtime

    def _spawn(self, coro: Coroutine[Any, Any, object]) -> None:
        task: asyncio.Task[object] = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _start_channel(self, channel: Channel) -> None:
        lease = self.leases.get(channel.type)
        try:
            # A leased connection starts receiving when this replica takes its lease.
            await channel.start(self.pipeline.submit, receive=lease is None)
        except Exception as exc:  # a channel that cannot start must not take the gateway down
            channel.health.degrade(f"failed to start: {exc}")
            log.error("channel_start_failed", channel=channel.type.value, error=str(exc))
        if lease is not None and not self.shutting_down:
            lease.start()

    def channel_health(self) -> dict[str, dict[str, object]]:
        out: dict[str, dict[str, object]] = {}
        if self.config.channels.webchat.enabled:
            out[ChannelType.WEBCHAT.value] = self.webchat_health.as_json(stall_after_s=float("inf"))
        for channel in self.channels:
            health = channel.health.as_json()
            lease = self.leases.get(channel.type)
            # Which replica receives this platform connection (SPEC §9); null: none yet.
            health["receiver"] = self.replica.id if lease is None else lease.holder
            out[channel.type.value] = health
        return out

    def status(self) -> dict[str, object]:
        return {
            "version": __version__,
            "uptime_s": round(time.time() - self.started_at, 1),
            "provider": {
                "name": self.choice.name,
                "model": self.choice.model,
                "reason": self.choice.reason,
                "fallbacks": [p.name + "/" + p.model for p in self.chain.providers[1:]],
            },
            "channels": self.channel_health(),
            "storage": {"backend": self.store.backend},
            "replica": self.replica.id,
            "in_flight": self.pipeline.in_flight,
        }

    def check_accepting(self) -> None:
        """New work (a chat, a message to deliver) is refused with 503 once shutdown begins."""
        if self.shutting_down:
            raise NotReadyError(SHUTTING_DOWN_TEXT)

    # -- shutdown, in this order: begin_shutdown → drain → (HTTP server stops) → stop ----------

    async def begin_shutdown(self) -> None:
        """Refuse new work and stop push channels taking platform events. Sending still works,
        and the HTTP server keeps answering: in-flight replies reach their clients, new
        requests get 503 `not_ready`, `/ready` says not_ready."""
        if self.shutting_down:
            return
        self.shutting_down = True
        self.pipeline.accepting = False
        for lease in self.leases.values():
            await lease.stop()  # no more taking or handing over receivers: we are leaving
        await self.sweep.stop()
        for channel in self.channels:
            # A channel without stop_receiving (an adapter written before it existed) keeps
            # receiving until stop(); what it submits meanwhile is still processed.
            stop_receiving = getattr(channel, "stop_receiving", None)
            if stop_receiving is None:
                continue
            try:
                await stop_receiving()
            except Exception as exc:  # one channel's failure must not stop the shutdown
                log.warning(
                    "channel_stop_receiving_failed", channel=channel.type.value, error=str(exc)
                )

    async def drain(self, timeout_s: float) -> bool:
        """Wait for in-flight turns (their replies are stored and queued). False on timeout:
        the rest stay pending in storage and are answered by recovery at the next start."""
        drained = await self.pipeline.drain(timeout_s)
        if drained:
            log.info("drain_done")
        else:
            log.warning("drain_timeout", in_flight=self.pipeline.in_flight)
        return drained

    async def stop(
        self, drain_timeout_s: float = 30.0, flush_timeout_s: float = OUTBOX_FLUSH_TIMEOUT_S
    ) -> None:
        """The whole shutdown after the HTTP server has stopped (steps already done return at
        once): refuse new work, drain, deliver the outbox once more, close channels, bus,
        HTTP client and storage."""
        await self.begin_shutdown()
        drained = self.pipeline.in_flight == 0 or await self.drain(drain_timeout_s)
        for task in list(self._background):  # channel starts
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        # Turns still running or waiting stay pending in storage.
        await self.pipeline.cancel_waiting()
        await self.pruner.stop()
        try:
            flushed = await self.outbox.flush_and_stop(flush_timeout_s)
        except Exception as exc:  # the worker died earlier; its rows wait in storage
            log.error("outbox_flush_failed", error=repr(exc))
            flushed = False
        pending = await self._pending_outbox()
        for channel in self.channels:
            try:
                await channel.stop()
            except Exception as exc:  # keep closing the rest
                log.warning("channel_stop_failed", channel=channel.type.value, error=str(exc))
            channel.health.state = ChannelState.STOPPED
        if self.rotation is not None:
            await self.rotation.stop()
        await self.heartbeat.stop()
        try:
            # Hand what we still hold to the other replicas now, not after `lease_s`.
            await self.store.claims.release_owner(self.replica.id)
        except (SQLAlchemyError, OSError) as exc:
            log.warning("claims_release_failed", error=type(exc).__name__)
        await self.bus.close()
        await self.http.close()
        await self.store.close()
        if self.instance_lock is not None:
            self.instance_lock.release()
        log.info("gateway_stopped", drained=drained, flushed=flushed, outbox_pending=pending)

    async def _pending_outbox(self) -> int | None:
        try:
            return await self.store.outbox.count("pending")
        except (SQLAlchemyError, OSError):
            return None
