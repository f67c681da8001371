"""Reload (SIGHUP, `POST /api/v1/reload`, `open-clanker reload`): re-read the config file and
the `_FILE` secrets, and apply what SPEC §3 lists without dropping a connection or a message.

Everything new is built first (config, tokens, provider chain, stages); only then is it
swapped in, in one step with no await between the swaps, so a request sees either the old
settings or the new ones. A turn already running keeps the stages (and so the provider
chain) it started with. An invalid file, a missing secret file or a provider without its key
refuses the whole reload: nothing changes and the reason is logged. A reload applies to the
replica that receives it; with several replicas, reload each (SIGHUP each process).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol, runtime_checkable

import structlog

from open_clanker.agent.factory import build_chain
from open_clanker.agent.select import ProviderChoice, resolve_fallback
from open_clanker.config.loader import LoadedConfig
from open_clanker.config.model import Config
from open_clanker.core.errors import ClankerError, ConfigError, NotReadyError
from open_clanker.core.logging import REDACTOR, resolve_level
from open_clanker.gateway.reload_plan import LIVE_CHANNEL_KEYS, ReloadPlan, plan_reload
from open_clanker.gateway.runtime import Runtime
from open_clanker.gateway.secrets import secret_values
from open_clanker.gateway.tokens import resolve_tokens
from open_clanker.pipeline.assemble import build_stages
from open_clanker.pipeline.ratelimit import RateLimiter
from open_clanker.pipeline.stages import Limits

log = structlog.get_logger("open_clanker.reload")

# Library loggers kept at warning or above whatever the level (as core/logging.py sets them).
_QUIET_LOGGERS = ("aiosqlite", "httpx", "httpcore", "hpack", "websockets", "asyncio")


@runtime_checkable
class SupportsReconfigure(Protocol):
    """A channel adapter that takes new allow-list and mention settings while it runs."""

    def reconfigure(self, config: Any) -> None: ...


@dataclass(frozen=True)
class ReloadResult:
    applied: tuple[str, ...]
    restart_required: tuple[str, ...]

    def as_json(self) -> dict[str, object]:
        return {
            "status": "applied" if self.applied else "unchanged",
            "applied": list(self.applied),
            "restart_required": list(self.restart_required),
        }


def agent_fingerprint(choices: list[ProviderChoice]) -> tuple[tuple[str, str, str, str], ...]:
    """What identifies a provider chain, keys included (as hashes: kept in memory only)."""
    return tuple(
        (c.name, c.model, c.base_url, hashlib.sha256(c.api_key.encode()).hexdigest())
        for c in choices
    )


class Reloader:
    def __init__(
        self,
        runtime: Runtime,
        load: Callable[[], LoadedConfig],
        bind_host: str,
        verbose: bool = False,
        env: Mapping[str, str] = os.environ,
    ) -> None:
        self._runtime = runtime
        self._load = load
        self._host = bind_host
        self._verbose = verbose
        self._env = env
        self._lock = asyncio.Lock()
        self._agent = agent_fingerprint(_choices(runtime.choice, runtime.config, env))

    async def reload(self, trigger: str) -> ReloadResult:
        """Apply the config on disk; raises `ConfigError` (nothing applied) if it is refused."""
        if self._runtime.shutting_down:
            raise NotReadyError("The gateway is shutting down; a reload would not take effect.")
        async with self._lock:
            try:
                return await self._reload(trigger)
            except ClankerError as exc:
                problems = [p for p in getattr(exc, "problems", []) if p != exc.message]
                reason = " ".join([exc.message, *problems])
                log.error("reload_refused", trigger=trigger, reason=reason)
                raise

    async def _reload(self, trigger: str) -> ReloadResult:
        runtime = self._runtime
        loaded = self._load()
        plan = plan_reload(runtime.config, loaded.config)
        config = plan.effective
        tokens = replace(resolve_tokens(config, self._host), rotated=runtime.tokens.rotated)
        level = resolve_level(self._verbose, self._env.get("OPENCLAW_LOG"), config.logging.level)
        chain, choice = await build_chain(config.agent, runtime.http, self._env)
        agent = agent_fingerprint(_choices(choice, config, self._env))
        REDACTOR.add(secret_values(config, self._env))
        applied = list(plan.applied)
        agent_changed = any(p.startswith("agent.") for p in applied)
        swap_chain = agent_changed or agent != self._agent
        if swap_chain and not agent_changed:
            applied.append("agent (provider keys)")
        configured_changed = not (tokens.generated and runtime.tokens.generated)
        if (
            configured_changed
            and tokens.values != runtime.tokens.values
            and ("server.auth_tokens" not in applied)
        ):
            applied.append("server.auth_tokens")
        unsupported = self._unsupported_channels(plan)
        # -- swap: from here to the end, no await, so no request sees half of it ----------
        runtime.config = config
        runtime.tokens = tokens
        if swap_chain:
            runtime.chain, runtime.choice, self._agent = chain, choice, agent
            runtime.metrics.attach(runtime.pipeline, chain, runtime.outbox, runtime.channel_health)
        intake, turn = build_stages(
            config,
            runtime.store,
            runtime.bus,
            runtime.chain,
            runtime.channels,
            runtime.pipeline.stopper,
            lambda name: _bot_username(runtime, name),
            _limiter(runtime),
        )
        runtime.pipeline.replace_stages(intake, turn)
        runtime.sweep.set_max_age(config.limits.recovery_max_age_s)
        self._reconfigure_channels(plan)
        _set_level(level)
        restart = (*plan.restart_required, *unsupported)
        log.info("config_reloaded", trigger=trigger, applied=", ".join(applied) or "nothing")
        if restart:
            log.warning("reload_needs_restart", keys=", ".join(restart), detail="kept as they were")
        return ReloadResult(tuple(applied), restart)

    def _unsupported_channels(self, plan: ReloadPlan) -> tuple[str, ...]:
        """Channels whose adapter cannot take new settings live: their keys wait too."""
        out = []
        for name in plan.changed_channels:
            channel = self._runtime.channels.get(name)
            if channel is not None and not isinstance(channel, SupportsReconfigure):
                adapter_keys = [k for k in LIVE_CHANNEL_KEYS[name] if k != "allowed_chats"]
                out += [f"channels.{name}.{k}" for k in adapter_keys]
        return tuple(out)

    def _reconfigure_channels(self, plan: ReloadPlan) -> None:
        for name in plan.changed_channels:
            channel = self._runtime.channels.get(name)
            section = getattr(plan.effective.channels, name)
            if isinstance(channel, SupportsReconfigure) and section is not None:
                channel.reconfigure(section)


class ReloadOnSignal:
    """SIGHUP: one reload at a time in the background; a refused one is logged, never fatal."""

    def __init__(self, reloader: Reloader) -> None:
        self._reloader = reloader
        self._task: asyncio.Task[None] | None = None

    def trigger(self) -> None:
        log.info("reload_requested", trigger="SIGHUP")
        self._task = asyncio.ensure_future(self._run(self._task))

    async def _run(self, previous: asyncio.Task[None] | None) -> None:
        if previous is not None:
            await asyncio.gather(previous, return_exceptions=True)
        # A refusal is logged by reload() as reload_refused; the running config stays.
        with contextlib.suppress(ClankerError):
            await self._reloader.reload("SIGHUP")

    async def wait(self) -> None:
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)


def _choices(
    primary: ProviderChoice, config: Config, env: Mapping[str, str]
) -> list[ProviderChoice]:
    out = [primary]
    for fb in config.agent.fallbacks:
        try:
            out.append(resolve_fallback(fb, env))
        except ConfigError:
            continue  # resolved at start, or refused by build_chain before it counts
    return out


def _limiter(runtime: Runtime) -> RateLimiter | None:
    for stage in runtime.pipeline.intake:
        if isinstance(stage, Limits):
            return stage.limiter
    return None


def _bot_username(runtime: Runtime, channel: str) -> str | None:
    adapter = runtime.channels.get(channel)
    return getattr(adapter, "bot_username", None) if adapter else None


def _set_level(level: str) -> None:
    root = logging.getLogger()
    root.setLevel(level.upper())
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
