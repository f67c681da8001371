"""Telegram through the whole gateway: config → runtime → adapter → Bot API double, and back."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from open_clanker.config.model import Config
from tests.doubles.telegram_double import TelegramDouble, message, update, user
from tests.harness import running_gateway, settled
from tests.proc import clean_env

pytestmark = pytest.mark.usefixtures("data_dir")


def tg_config(double: TelegramDouble, **telegram: Any) -> Config:
    return Config.model_validate(
        {
            "access": {"dm_policy": "allowlist"},
            "channels": {
                "telegram": {
                    "bot_token": double.token,
                    "api_base_url": double.base_url,
                    "allowed_chats": [42],
                    **telegram,
                }
            },
        }
    )


async def test_polling_answer_status_ready_and_send() -> None:
    double = TelegramDouble()
    await double.start()
    try:
        async with running_gateway(tg_config(double)) as gw, aiohttp.ClientSession() as http:
            double.push(update(message("hello bot", chat_id=42)))
            await double.wait_until(lambda: any(s.chat_id == 42 for s in double.sent), 10)
            assert "hello bot" in double.sent[0].text  # the echo provider's answer
            async with http.get(f"{gw.base_url}/ready") as r:
                ready = await r.json()
            assert ready["channels"]["telegram"]["state"] == "connected"
            assert ready["channels"]["telegram"]["last_contact"] is not None
            async with http.get(f"{gw.base_url}/api/v1/status", headers=gw.auth) as r:
                status = await r.json()
            assert status["channels"]["telegram"]["state"] == "connected"
            assert double.token not in json.dumps(status)
            body = {"channel": "telegram", "channel_id": "77", "text": "Operator says hi"}
            async with http.post(f"{gw.base_url}/api/v1/message", json=body, headers=gw.auth) as r:
                assert r.status == 202
                assert (await r.json())["status"] == "queued"
            await double.wait_until(lambda: any(s.chat_id == 77 for s in double.sent), 10)
            assert [s.text for s in double.sent if s.chat_id == 77] == ["Operator says hi"]
    finally:
        await double.stop()


async def test_webhook_route_checks_the_secret() -> None:
    double = TelegramDouble()
    await double.start()
    config = tg_config(
        double,
        mode="webhook",
        webhook_url="https://bot.example.com/tg/hook",
        webhook_secret="hook-secret-123",
    )
    try:
        async with running_gateway(config) as gw, aiohttp.ClientSession() as http:
            await double.wait_until(lambda: bool(double.webhook_url), 10)
            assert double.webhook_url == "https://bot.example.com/tg/hook"
            assert double.webhook_secret == "hook-secret-123"
            payload = update(message("via webhook", chat_id=42), update_id=500)
            url = f"{gw.base_url}/tg/hook"
            public = {"Host": "bot.example.com"}  # the platform calls the public name
            wrong = {**public, "X-Telegram-Bot-Api-Secret-Token": "nope"}
            async with http.post(url, json=payload, headers=wrong) as r:
                assert r.status == 401
            right = {**public, "X-Telegram-Bot-Api-Secret-Token": "hook-secret-123"}
            async with http.post(url, json=payload, headers=right) as r:
                assert r.status == 200
            await double.wait_until(lambda: any(s.chat_id == 42 for s in double.sent), 10)
            assert "via webhook" in double.sent[0].text
            async with http.post(url, json=payload, headers=right) as r:
                assert r.status == 200  # a re-delivery is accepted ...
            await settled(gw)
            assert sum(s.chat_id == 42 for s in double.sent) == 1  # ... and answered once
            async with http.get(
                f"{gw.base_url}/api/v1/status", headers={**gw.auth, "Host": "bot.example.com"}
            ) as r:
                assert r.status == 403  # only the webhook path is open to the public name
    finally:
        await double.stop()


async def test_stranger_paired_with_the_cli_is_then_answered(data_dir: Path) -> None:
    double = TelegramDouble()
    await double.start()
    config = tg_config(double, allowed_chats=[])
    config = config.model_copy(
        update={"access": config.access.model_copy(update={"dm_policy": "pairing"})}
    )
    try:
        async with running_gateway(config) as gw:
            double.push(update(message("hi, who are you?", chat_id=555, sender=user(555))))
            await double.wait_until(lambda: any(s.chat_id == 555 for s in double.sent), 10)
            notice = double.sent[0].text
            assert "pairing code is" in notice
            code = notice.split("pairing code is ")[1][:8]
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "open_clanker",
                "pairing",
                "approve",
                code.lower(),
                env=clean_env(data_dir),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await proc.communicate()
            assert proc.returncode == 0, err.decode()
            assert "telegram:555" in out.decode()
            double.push(update(message("/start", chat_id=555, sender=user(555))))
            double.push(update(message("and now?", chat_id=555, sender=user(555))))
            await double.wait_until(lambda: sum(s.chat_id == 555 for s in double.sent) >= 3, 10)
            texts = [s.text for s in double.sent if s.chat_id == 555]
            assert texts[1].startswith("Hello!")
            assert "and now?" in texts[2]
            await settled(gw)
    finally:
        await double.stop()
