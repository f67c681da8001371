"""Config: defaults, the search path, env overrides, named problems, renamed keys."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from open_clanker.config import TEMPLATE, Config, load_config
from open_clanker.core.errors import ConfigError

pytestmark = pytest.mark.usefixtures("data_dir")


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(exc: pytest.ExceptionInfo[ConfigError]) -> str:
    return "\n".join(exc.value.problems)


def test_no_file_is_valid_with_spec_defaults() -> None:
    loaded = load_config()
    c = loaded.config
    assert loaded.path is None
    assert (c.server.host, c.server.port) == ("127.0.0.1", 18789)
    assert c.agent.provider == "auto"
    assert c.agent.history_messages == 40
    assert c.access.dm_policy == "pairing"
    assert c.limits.messages_per_minute == 20
    assert c.limits.recovery_max_age_s == 3600
    assert c.channels.webchat.enabled is True
    assert c.channels.telegram is None


def test_search_path_finds_cwd_config(tmp_path: Path) -> None:
    write(tmp_path / "config.toml", "[server]\nport = 9999\n")
    loaded = load_config()
    assert loaded.config.server.port == 9999
    assert loaded.path == Path("config.toml")


def test_openclaw_config_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = write(tmp_path / "elsewhere.toml", "[agent]\nmax_tokens = 7\n")
    monkeypatch.setenv("OPENCLAW_CONFIG", str(p))
    assert load_config().config.agent.max_tokens == 7


def test_explicit_missing_file_is_an_error() -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config("/nonexistent/config.toml")


def test_unknown_key_named_with_did_you_mean(tmp_path: Path) -> None:
    p = write(tmp_path / "c.toml", "[agent]\nmodle = 'x'\n[sever]\nport = 1\n")
    with pytest.raises(ConfigError) as exc:
        load_config(p)
    text = problems_of(exc)
    assert "agent.modle: unknown key (did you mean 'agent.model'?)" in text
    assert "sever: unknown key (did you mean 'server'?)" in text


def test_wrong_types_named_by_key_path(tmp_path: Path) -> None:
    p = write(
        tmp_path / "c.toml",
        "[server]\nport = 'high'\n[agent]\nmax_tokens = 0\nprovider = 'gpt'\n"
        "[[agent.fallbacks]]\nprovider = 'nobody'\n",
    )
    with pytest.raises(ConfigError) as exc:
        load_config(p)
    text = problems_of(exc)
    assert "server.port:" in text
    assert "agent.max_tokens:" in text
    assert "agent.provider:" in text
    assert "agent.fallbacks[0].provider:" in text


def test_bad_toml_is_one_clear_error(tmp_path: Path) -> None:
    p = write(tmp_path / "c.toml", "[server\nport = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(p)


def test_env_overrides_nested_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENCLAW_SERVER__PORT", "8080")
    monkeypatch.setenv("OPENCLAW_AGENT__STREAM", "false")
    monkeypatch.setenv("OPENCLAW_ACCESS__ALLOW", '["telegram:1", "discord:2"]')
    c = load_config().config
    assert c.server.port == 8080
    assert c.agent.stream is False
    assert c.access.allow == ["telegram:1", "discord:2"]


def test_env_override_error_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENCLAW_SERVER__PORT", "lots")
    with pytest.raises(ConfigError) as exc:
        load_config()
    assert "server.port" in problems_of(exc)
    assert "OPENCLAW_SERVER__PORT" in problems_of(exc)


def test_seed_env_names_fill_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENCLAW_TELEGRAM_BOT_TOKEN", "123456:ABCDEF_secret_token_value_xyz_123456")
    monkeypatch.setenv("OPENCLAW_GATEWAY_TOKEN", "gw-token-1234567")
    c = load_config().config
    assert c.channels.telegram is not None  # a token in the env enables the channel
    assert c.channels.telegram.bot_token.get_secret_value().startswith("123456:")
    assert [t.get_secret_value() for t in c.server.auth_tokens] == ["gw-token-1234567"]
    assert "secret_token" not in repr(c)  # SecretStr keeps it out of reprs


def test_present_channel_without_token_is_named(tmp_path: Path) -> None:
    p = write(tmp_path / "c.toml", "[channels.telegram]\nallowed_chats = [1]\n")
    with pytest.raises(ConfigError) as exc:
        load_config(p)
    assert "channels.telegram.bot_token" in problems_of(exc)


def test_renamed_key_still_works_with_warning(tmp_path: Path) -> None:
    p = write(tmp_path / "c.toml", "[agent]\nhistory_limit = 12\n")
    loaded = load_config(p)
    assert loaded.config.agent.history_messages == 12
    assert any("agent.history_messages" in w for w in loaded.warnings)


def test_template_is_valid_and_complete(tmp_path: Path) -> None:
    data = tomllib.loads(TEMPLATE)
    assert Config.model_validate(data) == Config()
    p = write(tmp_path / "c.toml", TEMPLATE)
    assert load_config(p).config == Config()
    for section in ("server", "storage", "bus", "agent", "access", "limits", "logging"):
        assert f"[{section}]" in TEMPLATE


def test_allow_entries_must_name_a_channel(tmp_path: Path) -> None:
    p = write(tmp_path / "c.toml", "[access]\nallow = ['123']\n")
    with pytest.raises(ConfigError) as exc:
        load_config(p)
    assert "access.allow[0]" in problems_of(exc)


def test_discord_ids_may_be_toml_numbers() -> None:
    from open_clanker.channels.discord.config import DiscordConfig

    section = DiscordConfig.model_validate(
        {"bot_token": "t", "guild_id": 123456789012345678, "allowed_channels": [234567890123456789]}
    )
    assert section.guild_id == "123456789012345678"
    assert section.allowed_channels == [234567890123456789]
