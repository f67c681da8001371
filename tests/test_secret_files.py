"""`<NAME>_FILE` secrets (SPEC §4.2): every secret variable may name a file that holds it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from open_clanker.agent.select import find_key
from open_clanker.config.loader import load_config
from open_clanker.core.errors import ConfigError
from open_clanker.core.secret_env import secret_from_env

pytestmark = pytest.mark.usefixtures("data_dir")


def test_value_file_both_and_neither(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("  s3cret-value\n\n")
    assert secret_from_env({"X": "direct"}, "X") == "direct"
    assert secret_from_env({"X_FILE": str(secret)}, "X") == "s3cret-value"
    assert secret_from_env({}, "X") == ""
    with pytest.raises(ConfigError, match="X and X_FILE are both set"):
        secret_from_env({"X": "a", "X_FILE": str(secret)}, "X")


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        ("missing", "No such file"),
        ("directory", "Is a directory"),
        ("empty", "is empty"),
        ("binary", "is not UTF-8"),
        ("huge", "larger than a secret"),
    ],
)
def test_unreadable_file_names_the_variable(tmp_path: Path, setup: str, reason: str) -> None:
    path = tmp_path / "secret"
    if setup == "directory":
        path.mkdir()
    elif setup == "empty":
        path.write_text("\n")
    elif setup == "binary":
        path.write_bytes(b"\xff\xfe\x00")
    elif setup == "huge":
        path.write_bytes(b"x" * (65 * 1024))
    with pytest.raises(ConfigError) as caught:
        secret_from_env(
            {"OPENCLAW_DISCORD_BOT_TOKEN_FILE": str(path)}, "OPENCLAW_DISCORD_BOT_TOKEN"
        )
    message = caught.value.message
    assert message.startswith("OPENCLAW_DISCORD_BOT_TOKEN_FILE: ")
    assert reason in message and str(path) in message


def test_unreadable_permissions(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        path = tmp_path / "nope" / "secret"  # root reads any mode; a missing parent it cannot
    else:
        path = tmp_path / "secret"
        path.write_text("x")
        path.chmod(0)
    with pytest.raises(ConfigError, match="OPENCLAW_GATEWAY_TOKEN_FILE: cannot read"):
        secret_from_env({"OPENCLAW_GATEWAY_TOKEN_FILE": str(path)}, "OPENCLAW_GATEWAY_TOKEN")


def write(tmp_path: Path, name: str, value: str) -> str:
    path = tmp_path / name
    path.write_text(value + "\n")
    return str(path)


def test_every_secret_variable_has_a_file_form(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = {
        "OPENCLAW_GATEWAY_TOKEN": "gw-token-from-file",
        "OPENCLAW_TELEGRAM_BOT_TOKEN": "123456:telegram-from-file",
        "OPENCLAW_DISCORD_BOT_TOKEN": "discord-from-file",
        "OPENCLAW_SLACK_BOT_TOKEN": "xoxb-from-file",
        "OPENCLAW_SLACK_APP_TOKEN": "xapp-from-file",
        "OPENCLAW_SLACK_SIGNING_SECRET": "signing-from-file",
    }
    for name, value in names.items():
        monkeypatch.setenv(f"{name}_FILE", write(tmp_path, name.lower(), value))
    config = load_config().config
    assert [t.get_secret_value() for t in config.server.auth_tokens] == ["gw-token-from-file"]
    channels = config.channels
    assert channels.telegram is not None and channels.discord is not None
    assert channels.slack is not None
    assert channels.telegram.bot_token.get_secret_value() == "123456:telegram-from-file"
    assert channels.discord.bot_token.get_secret_value() == "discord-from-file"
    assert channels.slack.bot_token.get_secret_value() == "xoxb-from-file"
    assert channels.slack.app_token.get_secret_value() == "xapp-from-file"
    assert channels.slack.signing_secret.get_secret_value() == "signing-from-file"


def test_any_key_override_has_a_file_form(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = "postgresql://clanker:pw@db:5432/clanker"
    monkeypatch.setenv("OPENCLAW_STORAGE__URL_FILE", write(tmp_path, "db-url", url))
    monkeypatch.setenv("OPENCLAW_LOGGING__FILE", str(tmp_path / "gw.log"))  # a key named file
    config = load_config().config
    assert config.storage.url == url
    assert config.logging.file == str(tmp_path / "gw.log")
    monkeypatch.setenv("OPENCLAW_STORAGE__URL", url)
    with pytest.raises(ConfigError, match="OPENCLAW_STORAGE__URL and OPENCLAW_STORAGE__URL_FILE"):
        load_config()


@pytest.mark.parametrize(
    ("provider", "name"),
    [
        ("anthropic", "OPENCLAW_ANTHROPIC_API_KEY"),
        ("anthropic", "ANTHROPIC_API_KEY"),
        ("openai", "OPENCLAW_OPENAI_API_KEY"),
        ("openai", "OPENAI_API_KEY"),
    ],
)
def test_provider_keys_from_files(tmp_path: Path, provider: str, name: str) -> None:
    env = {f"{name}_FILE": write(tmp_path, "key", "sk-from-a-file-0123456789")}
    assert find_key(provider, "", env) == ("sk-from-a-file-0123456789", name)


def test_custom_key_env_from_a_file(tmp_path: Path) -> None:
    env = {"MY_VLLM_KEY_FILE": write(tmp_path, "key", "vllm-key")}
    assert find_key("openai", "MY_VLLM_KEY", env) == ("vllm-key", "MY_VLLM_KEY")
    with pytest.raises(ConfigError, match="MY_VLLM_KEY_FILE: cannot read"):
        find_key("openai", "MY_VLLM_KEY", {"MY_VLLM_KEY_FILE": str(tmp_path / "missing")})
