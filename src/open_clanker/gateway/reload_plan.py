"""What a reload may change (SPEC §3), as a pure function of the running and the new config.

Applied live: auth tokens, `[access]`, `[limits]` (but `lease_s`), `[agent]`, each channel's
allow list and mention settings, the log level. Anything else that differs needs a restart:
it is named and the running value is kept, so the effective config is the running one with
only the live keys taken from the new file.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, SecretStr

from open_clanker.config.model import ChannelsConfig, Config

# Per channel section: the keys a reload applies (the rest of the section needs a restart).
LIVE_CHANNEL_KEYS: dict[str, tuple[str, ...]] = {
    "telegram": ("allowed_chats",),
    "discord": ("allowed_channels", "guild_id", "require_mention"),
    "slack": ("allowed_channels", "require_mention"),
}
LIVE_LIMITS_KEYS = ("messages_per_minute", "recovery_max_age_s")  # lease_s: replicas' claims


@dataclass(frozen=True)
class ReloadPlan:
    effective: Config  # what runs after the reload
    applied: tuple[str, ...]  # key paths that change now
    restart_required: tuple[str, ...]  # key paths that differ but wait for a restart

    @property
    def changed_channels(self) -> tuple[str, ...]:
        """Channels whose live settings change (their adapters are told)."""
        names = {p.split(".")[1] for p in self.applied if p.startswith("channels.")}
        return tuple(sorted(names))


def plan_reload(running: Config, new: Config) -> ReloadPlan:
    effective = running.model_copy(
        update={
            "server": running.server.model_copy(update={"auth_tokens": new.server.auth_tokens}),
            "access": new.access,
            "limits": running.limits.model_copy(
                update={k: getattr(new.limits, k) for k in LIVE_LIMITS_KEYS}
            ),
            "agent": new.agent,
            "channels": _channels(running.channels, new.channels),
            "logging": running.logging.model_copy(update={"level": new.logging.level}),
        }
    )
    before, wanted, after = _flat(running), _flat(new), _flat(effective)
    paths = sorted(set(before) | set(wanted))
    applied = tuple(p for p in paths if before.get(p, _ABSENT) != after.get(p, _ABSENT))
    waiting = tuple(p for p in paths if wanted.get(p, _ABSENT) != after.get(p, _ABSENT))
    return ReloadPlan(effective, _collapse(applied), _collapse(waiting))


def _channels(running: ChannelsConfig, new: ChannelsConfig) -> ChannelsConfig:
    """Live keys of channels present in both; a channel appearing or going waits (restart)."""
    update: dict[str, Any] = {}
    for name, keys in LIVE_CHANNEL_KEYS.items():
        old_section, new_section = getattr(running, name), getattr(new, name)
        if old_section is not None and new_section is not None:
            update[name] = old_section.model_copy(update={k: getattr(new_section, k) for k in keys})
    return running.model_copy(update=update)


_ABSENT = object()


def _flat(model: BaseModel) -> dict[str, Any]:
    return dict(_leaves(model, ""))


def _leaves(value: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    if isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _leaves(getattr(value, name), f"{prefix}.{name}" if prefix else name)
        return
    if value is None and prefix.startswith("channels.") and prefix.count(".") == 1:
        yield prefix, None  # a channel section that is absent (disabled)
        return
    yield prefix, _plain(value)


def _plain(value: Any) -> Any:
    """Comparable form: secrets by value (never shown), lists and models recursively."""
    if isinstance(value, SecretStr):
        return ("secret", value.get_secret_value())
    if isinstance(value, list | tuple):
        return tuple(_plain(v) for v in value)
    if isinstance(value, BaseModel):
        return tuple(_flat(value).items())
    if isinstance(value, Mapping):
        return tuple(sorted((k, _plain(v)) for k, v in value.items()))
    return value


def _collapse(paths: tuple[str, ...]) -> tuple[str, ...]:
    """`channels.telegram` once when a whole section appears or goes, not each of its keys."""
    sections = {p for p in paths if p.startswith("channels.") and p.count(".") == 1}
    return tuple(p for p in paths if not any(p.startswith(s + ".") for s in sections))
