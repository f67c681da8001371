"""Telegram webhook mode, hardened (issue 13, item 12): a secret is required by config-validate,
a deeply nested body with the right secret is a 400 (not a 500), and wrong secrets count
toward the auth lockout."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import pytest

from open_clanker.config.model import Config
from open_clanker.gateway.lockout import MAX_FAILURES
from tests.doubles.telegram_double import TelegramDouble, message, update
from tests.harness import running_gateway
from tests.proc import clean_env, cli

SECRET = "hook-secret-123"


def test_webhook_mode_without_a_secret_fails_config_validate(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(
        "[channels.telegram]\n"
        'bot_token = "123456:ABCdefGHIjklMNOpqrSTUvwxYZ0123456789"\n'
        'mode = "webhook"\n'
        'webhook_url = "https://bot.example.com/tg/hook"\n'
    )
    result = cli(["config-validate"], clean_env(tmp_path / "data"), tmp_path)
    assert result.returncode == 1
    problems = [line for line in result.stderr.splitlines() if line.startswith("  - ")]
    assert len(problems) == 1, result.stderr  # one line, naming the key
    assert problems[0].startswith("  - channels.telegram.webhook_secret: required")


def test_a_secret_telegram_would_refuse_is_named(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(
        "[channels.telegram]\n"
        'bot_token = "123456:ABCdefGHIjklMNOpqrSTUvwxYZ0123456789"\n'
        'mode = "webhook"\nwebhook_url = "https://bot.example.com/tg/hook"\n'
        'webhook_secret = "has spaces and ünïcode"\n'
    )
    result = cli(["config-validate"], clean_env(tmp_path / "data"), tmp_path)
    assert result.returncode == 1
    assert "channels.telegram.webhook_secret" in result.stderr
    assert "A-Z a-z 0-9 _ -" in result.stderr
    assert "has spaces" not in result.stderr  # a secret is never echoed


@pytest.mark.usefixtures("data_dir")
async def test_nested_bodies_and_wrong_secrets_through_the_gateway() -> None:
    double = TelegramDouble()
    await double.start()
    config = Config.model_validate(
        {
            "access": {"dm_policy": "allowlist"},
            "channels": {
                "telegram": {
                    "bot_token": double.token,
                    "api_base_url": double.base_url,
                    "allowed_chats": [42],
                    "mode": "webhook",
                    "webhook_url": "https://bot.example.com/tg/hook",
                    "webhook_secret": SECRET,
                }
            },
        }
    )
    try:
        async with running_gateway(config) as gw, aiohttp.ClientSession() as http:
            await double.wait_until(lambda: bool(double.webhook_url), 10)
            url = f"{gw.base_url}/tg/hook"
            right = {"Host": "bot.example.com", "X-Telegram-Bot-Api-Secret-Token": SECRET}
            deep = b'{"update_id": 1, "message": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
            chat = {"id": 42, "type": "private"}
            nested = {"update_id": 2, "message": {"message_id": 1, "date": 0, "chat": chat}}
            inner = nested["message"]
            for _ in range(700):  # too deep for the update parser, not for json
                inner["reply_to_message"] = {"message_id": 1, "date": 0, "chat": chat}
                inner = inner["reply_to_message"]
            for body in (deep, json.dumps(nested).encode(), b"[1, 2]", b"\xff"):
                async with http.post(url, data=body, headers=right) as r:
                    assert r.status == 400, body[:40]
            ok = update(message("still fine", chat_id=42), update_id=3)
            async with http.post(url, json=ok, headers=right) as r:
                assert r.status == 200
            await double.wait_until(lambda: any(s.chat_id == 42 for s in double.sent), 10)

            wrong = {**right, "X-Telegram-Bot-Api-Secret-Token": "guess"}
            for _ in range(MAX_FAILURES):
                async with http.post(url, json=ok, headers=wrong) as r:
                    assert r.status == 401
            async with http.post(url, json=ok, headers=right) as r:
                assert r.status == 429  # locked out, whatever it sends
                assert int(r.headers["Retry-After"]) > 200
            async with http.get(f"{gw.base_url}/api/v1/status", headers=gw.auth) as r:
                assert r.status == 429  # the same lockout as the API's
    finally:
        await double.stop()
