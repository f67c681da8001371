"""`open-clanker doctor` as a user runs it: one line per check, exit 1 on any problem, the
setting to fix named, and never a secret in the output."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from open_clanker.storage.store import Store
from tests.doubles.anthropic_double import AnthropicDouble
from tests.doubles.telegram_double import TelegramDouble
from tests.proc import clean_env, cli, free_port

KEY = "sk-ant-SECRET-doctor-key-0123456789"
DISCORD_TOKEN = "discord-SECRET-bot-token-0123456789"


async def doctor(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(cli, ["doctor"], clean_env(tmp_path / "data", **env), tmp_path)


def lines(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """`{check name: its line}` for every `ok`/`FAIL` line."""
    out: dict[str, str] = {}
    for line in result.stdout.splitlines():
        if line.startswith(("ok ", "FAIL ")):
            name = line.split(None, 1)[1].split(":", 1)[0]
            out[name] = line
    return out


@pytest.fixture
async def model() -> AsyncIterator[AnthropicDouble]:
    async with AnthropicDouble(api_key=KEY) as double:
        yield double


@pytest.fixture
async def telegram() -> AsyncIterator[TelegramDouble]:
    double = TelegramDouble()
    await double.start()
    yield double
    await double.stop()


@pytest.fixture
async def discord_api() -> AsyncIterator[str]:
    """Just `GET /users/@me`, as Discord's REST API answers it."""

    async def me(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bot {DISCORD_TOKEN}":
            return web.json_response({"message": "401: Unauthorized", "code": 0}, status=401)
        return web.json_response({"id": "1", "username": "clanker", "bot": True})

    app = web.Application()
    app.router.add_get("/api/v10/users/@me", me)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}/api/v10"
    await runner.cleanup()


def write_config(tmp_path: Path, tg: TelegramDouble, discord_url: str | None = None) -> None:
    text = f'[channels.telegram]\napi_base_url = "{tg.base_url}"\n'
    if discord_url:
        text += f'[channels.discord]\napi_base_url = "{discord_url}"\n'
    (tmp_path / "config.toml").write_text(text)


def test_a_broken_config_names_what_is_broken(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("[agent]\nmodle = 'x'\n[server]\nport = 'high'\n")
    result = cli(["doctor"], clean_env(tmp_path / "data"), tmp_path)
    assert result.returncode == 1
    assert lines(result)["config"].startswith("FAIL config:")
    assert "agent.modle: unknown key (did you mean 'agent.model'?)" in result.stdout
    assert "server.port:" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


async def test_all_ok_with_a_working_provider_and_channels(
    tmp_path: Path, model: AnthropicDouble, telegram: TelegramDouble, discord_api: str
) -> None:
    write_config(tmp_path, telegram, discord_api)
    result = await doctor(
        tmp_path,
        OPENCLAW_ANTHROPIC_API_KEY=KEY,
        OPENCLAW_AGENT__BASE_URL=model.base_url,
        OPENCLAW_TELEGRAM_BOT_TOKEN=telegram.token,
        OPENCLAW_DISCORD_BOT_TOKEN=DISCORD_TOKEN,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    found = lines(result)
    assert set(found) == {
        "config",
        "data dir",
        "storage",
        "provider",
        "provider api",
        "telegram",
        "discord",
    }
    assert all(line.startswith("ok ") for line in found.values()), result.stdout
    assert "anthropic" in found["provider"] and "OPENCLAW_ANTHROPIC_API_KEY" in found["provider"]
    assert "the API key was accepted" in found["provider api"]
    assert "does not exist yet" in found["storage"]  # doctor never creates the database
    assert not (tmp_path / "data").exists()
    assert "@" in found["telegram"] and "clanker" in found["discord"]
    for secret in (KEY, telegram.token, DISCORD_TOKEN):
        assert secret not in result.stdout + result.stderr


async def test_a_refused_api_key_names_the_variable_not_the_key(
    tmp_path: Path, model: AnthropicDouble
) -> None:
    store = await Store.open(f"sqlite:///{tmp_path / 'data' / 'open-clanker.db'}")
    await store.close()
    wrong = "sk-ant-SECRET-wrong-key-9876543210"
    result = await doctor(
        tmp_path, OPENCLAW_ANTHROPIC_API_KEY=wrong, OPENCLAW_AGENT__BASE_URL=model.base_url
    )
    assert result.returncode == 1
    found = lines(result)
    assert found["provider api"].startswith("FAIL provider api: the API key was refused")
    assert "check OPENCLAW_ANTHROPIC_API_KEY" in found["provider api"]
    assert wrong not in result.stdout + result.stderr
    assert found["storage"].startswith("ok ") and "up to date" in found["storage"]


async def test_an_unreachable_provider_is_named_by_its_url(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    result = await doctor(tmp_path, OPENCLAW_OPENAI_API_KEY=KEY, OPENCLAW_AGENT__BASE_URL=dead)
    assert result.returncode == 1
    line = lines(result)["provider api"]
    assert line.startswith(f"FAIL provider api: cannot reach {dead}/models")
    assert "agent.base_url" in line
    assert KEY not in result.stdout


async def test_a_refused_telegram_token_fails(tmp_path: Path, telegram: TelegramDouble) -> None:
    write_config(tmp_path, telegram)
    wrong = "111222333:SECRET-wrong-telegram-token-abcdefghij"
    result = await doctor(tmp_path, OPENCLAW_TELEGRAM_BOT_TOKEN=wrong)
    assert result.returncode == 1
    line = lines(result)["telegram"]
    assert line.startswith("FAIL telegram:") and "refused the bot token" in line
    assert "OPENCLAW_TELEGRAM_BOT_TOKEN" in line
    assert wrong not in result.stdout + result.stderr


async def test_a_refused_discord_token_fails(tmp_path: Path, discord_api: str) -> None:
    (tmp_path / "config.toml").write_text(f'[channels.discord]\napi_base_url = "{discord_api}"\n')
    wrong = "discord-SECRET-wrong-token-000000"
    result = await doctor(tmp_path, OPENCLAW_DISCORD_BOT_TOKEN=wrong)
    assert result.returncode == 1
    line = lines(result)["discord"]
    assert line.startswith("FAIL discord:") and "OPENCLAW_DISCORD_BOT_TOKEN" in line
    assert wrong not in result.stdout + result.stderr


def test_an_unusable_data_dir_fails(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    # Under a regular file nothing can be created, even by root.
    env = clean_env(tmp_path / "data")
    env["OPENCLAW_DATA_DIR"] = str(blocker / "data")
    result = cli(["doctor"], env, tmp_path)
    assert result.returncode == 1
    found = lines(result)
    assert found["data dir"].startswith("FAIL data dir:")
    assert "cannot be created" in found["data dir"] and "OPENCLAW_DATA_DIR" in found["data dir"]
    assert found["storage"].startswith("FAIL storage:")


def test_a_token_file_others_can_read_fails(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    token = data / "gateway.token"
    token.write_text("tok-SECRET-abcdefgh123\n")
    token.chmod(0o644)
    result = cli(["doctor"], clean_env(data), tmp_path)
    assert result.returncode == 1
    line = lines(result)["token file"]
    assert line.startswith("FAIL token file:") and f"chmod 600 {token}" in line
    assert "tok-SECRET" not in result.stdout
    token.chmod(0o600)
    result = cli(["doctor"], clean_env(data), tmp_path)
    assert result.returncode == 0, result.stdout
    assert lines(result)["token file"].startswith("ok ")


async def test_slack_tokens_are_checked_and_a_refused_one_named(tmp_path: Path) -> None:
    from tests.doubles.slack_double import SlackDouble

    async with SlackDouble() as double:
        (tmp_path / "config.toml").write_text(
            f'[channels.slack]\napi_base_url = "{double.api_base_url}"\n'
        )
        good = await doctor(
            tmp_path,
            OPENCLAW_SLACK_BOT_TOKEN=double.bot_token,
            OPENCLAW_SLACK_APP_TOKEN=double.app_token,
        )
        wrong_app = "xapp-1-A0-0-SECRET-wrong-app-token"
        bad = await doctor(
            tmp_path, OPENCLAW_SLACK_BOT_TOKEN=double.bot_token, OPENCLAW_SLACK_APP_TOKEN=wrong_app
        )
    found = lines(good)
    assert found["slack"].startswith("ok   slack:") and "clanker" in found["slack"]
    assert found["slack app token"].startswith("ok   slack app token:")
    line = lines(bad)["slack app token"]
    assert line.startswith("FAIL slack app token:") and "OPENCLAW_SLACK_APP_TOKEN" in line
    assert bad.returncode == 1
    for result in (good, bad):
        output = result.stdout + result.stderr
        assert double.bot_token not in output and wrong_app not in output
