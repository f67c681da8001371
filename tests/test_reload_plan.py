"""What a reload applies and what waits for a restart (SPEC §3), as a table of config changes."""

from __future__ import annotations

from typing import Any

import pytest

from open_clanker.cli.duration import parse_duration
from open_clanker.config.model import Config
from open_clanker.core.errors import InputError
from open_clanker.gateway.reload_plan import plan_reload

TG = {"bot_token": "1:abc", "allowed_chats": [1]}
DC = {"bot_token": "d", "allowed_channels": ["5"], "require_mention": True}


def cfg(**sections: Any) -> Config:
    return Config.model_validate(sections)


CASES = [
    # (running, new, applied, restart_required)
    ({}, {}, [], []),
    ({}, {"server": {"auth_tokens": ["a"]}}, ["server.auth_tokens"], []),
    ({}, {"access": {"dm_policy": "open"}}, ["access.dm_policy"], []),
    ({}, {"access": {"allow": ["telegram:1"]}}, ["access.allow"], []),
    ({}, {"limits": {"messages_per_minute": 5}}, ["limits.messages_per_minute"], []),
    ({}, {"limits": {"recovery_max_age_s": 60}}, ["limits.recovery_max_age_s"], []),
    ({}, {"limits": {"lease_s": 10}}, [], ["limits.lease_s"]),
    (
        {},
        {"agent": {"model": "m", "system_prompt": "p"}},
        ["agent.model", "agent.system_prompt"],
        [],
    ),
    ({}, {"agent": {"fallbacks": [{"provider": "echo"}]}}, ["agent.fallbacks"], []),
    ({}, {"logging": {"level": "debug"}}, ["logging.level"], []),
    ({}, {"logging": {"format": "json"}}, [], ["logging.format"]),
    ({}, {"server": {"host": "0.0.0.0", "port": 1}}, [], ["server.host", "server.port"]),
    ({}, {"server": {"allowed_hosts": ["x.example"]}}, [], ["server.allowed_hosts"]),
    ({}, {"storage": {"url": "postgresql://db/x"}}, [], ["storage.url"]),
    ({}, {"bus": {"url": "redis://r:6379/0"}}, [], ["bus.url"]),
    ({}, {"channels": {"webchat": {"enabled": False}}}, [], ["channels.webchat.enabled"]),
    # Enabling or disabling a channel: named once, not key by key.
    ({}, {"channels": {"telegram": TG}}, [], ["channels.telegram"]),
    ({"channels": {"telegram": TG}}, {}, [], ["channels.telegram"]),
    (
        {"channels": {"telegram": TG}},
        {"channels": {"telegram": {**TG, "allowed_chats": [1, 2]}}},
        ["channels.telegram.allowed_chats"],
        [],
    ),
    (
        {"channels": {"telegram": TG}},
        {"channels": {"telegram": {**TG, "bot_token": "2:xyz"}}},
        [],
        ["channels.telegram.bot_token"],
    ),
    (
        {"channels": {"discord": DC}},
        {"channels": {"discord": {**DC, "require_mention": False, "guild_id": "9"}}},
        ["channels.discord.guild_id", "channels.discord.require_mention"],
        [],
    ),
    (
        {"server": {"auth_tokens": ["a"]}, "access": {"dm_policy": "open"}},
        {"server": {"auth_tokens": ["b"], "port": 2}, "access": {"dm_policy": "open"}},
        ["server.auth_tokens"],
        ["server.port"],
    ),
]


@pytest.mark.parametrize(("running", "new", "applied", "restart"), CASES)
def test_plan(
    running: dict[str, Any], new: dict[str, Any], applied: list[str], restart: list[str]
) -> None:
    old, wanted = cfg(**running), cfg(**new)
    plan = plan_reload(old, wanted)
    assert list(plan.applied) == applied
    assert list(plan.restart_required) == restart
    # What runs: the new live keys, the old everything else.
    effective = plan.effective
    assert effective.access == wanted.access and effective.agent == wanted.agent
    assert effective.server.auth_tokens == wanted.server.auth_tokens
    assert effective.server.port == old.server.port and effective.storage == old.storage
    assert effective.limits.lease_s == old.limits.lease_s
    assert (effective.channels.telegram is None) == (old.channels.telegram is None)
    # Applying the effective config again changes nothing more.
    assert plan_reload(effective, effective).applied == ()


def test_secrets_compare_by_value_and_never_appear() -> None:
    plan = plan_reload(
        cfg(server={"auth_tokens": ["old-secret"]}), cfg(server={"auth_tokens": ["new-secret"]})
    )
    assert plan.applied == ("server.auth_tokens",)
    assert "secret" not in repr(plan.applied) + repr(plan.restart_required)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("24h", 86400),
        ("30m", 1800),
        ("90s", 90),
        ("7d", 604800),
        ("1w", 604800),
        ("1h30m", 5400),
        ("0", 0),
        ("15", 15),
        ("2.5h", 9000),
        (" 10M ", 600),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "h", "10 h", "5x", "-1h", "1h-", "1.h"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(InputError, match="like 24h"):
        parse_duration(text)
