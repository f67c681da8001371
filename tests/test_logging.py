"""Logs as an operator reads them: one JSON object per line (console and file, ours and the
libraries'), one `request_id` across a message's lines, the level knobs, and no secret anywhere."""

from __future__ import annotations

import asyncio
import logging
import logging.handlers
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog

from open_clanker.core.errors import ConfigError
from open_clanker.core.logging import (
    LOG_FILE_BACKUPS,
    LOG_FILE_MAX_BYTES,
    resolve_level,
    setup_logging,
)
from tests.doubles.anthropic_double import AnthropicDouble, Reply
from tests.doubles.telegram_double import TelegramDouble, message, update, user
from tests.gw_async import (
    TOKEN,
    json_lines,
    kill,
    post_chat,
    signal_and_wait,
    start_gateway,
)
from tests.proc import GatewayProcess, clean_env, cli, free_port

PROVIDER_KEY = "sk-ant-SECRET-provider-key-1234567890"
TELEGRAM_TOKEN = "555666777:SECRET-telegram-token-abcdefghijklmnopq"
CHAT = 42


@pytest.mark.parametrize(
    ("verbose", "env_value", "configured", "expected"),
    [
        (False, None, "info", "info"),
        (False, "", "warning", "warning"),
        (False, "debug", "info", "debug"),  # OPENCLAW_LOG overrides the config
        (False, " WARNING ", "debug", "warning"),
        (True, "error", "info", "debug"),  # -v wins over both
    ],
)
def test_log_level_precedence(
    verbose: bool, env_value: str | None, configured: str, expected: str
) -> None:
    assert resolve_level(verbose, env_value, configured) == expected


def test_an_unknown_openclaw_log_value_is_named() -> None:
    with pytest.raises(ConfigError) as err:
        resolve_level(False, "loud", "info")
    assert "OPENCLAW_LOG" in err.value.message and "'loud'" in err.value.message


def test_the_file_gets_json_lines_while_the_console_stays_pretty(
    tmp_path: Path, restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "logs" / "gateway.log"  # the folder is made when missing
    setup_logging("info", "pretty", str(path))
    file_handlers = [
        h
        for h in logging.getLogger().handlers
        if isinstance(h, logging.handlers.RotatingFileHandler)
    ]
    assert [(h.maxBytes, h.backupCount) for h in file_handlers] == [
        (LOG_FILE_MAX_BYTES, LOG_FILE_BACKUPS)
    ]
    with structlog.contextvars.bound_contextvars(request_id="req-1"):
        structlog.get_logger("open_clanker.test").info("thing_done", count=3)
        logging.getLogger("uvicorn.error").info("Shutting %s", "down")
    for handler in file_handlers:
        handler.flush()
    ours, theirs = json_lines(path.read_text())
    assert (ours["event"], ours["level"], ours["count"]) == ("thing_done", "info", 3)
    assert (theirs["event"], theirs["logger"]) == ("Shutting down", "uvicorn.error")
    for line in (ours, theirs):
        assert line["request_id"] == "req-1"
        assert line["timestamp"].endswith("Z")
    console = capsys.readouterr().err
    assert "thing_done" in console and "Shutting down" in console
    assert not console.lstrip().startswith("{")  # pretty, not JSON


def test_an_unwritable_log_file_is_one_clear_error(tmp_path: Path, restore_logging: None) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    with pytest.raises(ConfigError) as err:
        setup_logging("info", "json", str(blocker / "gateway.log"))
    assert err.value.message.startswith("logging.file: cannot write")


def test_bad_openclaw_log_stops_the_gateway_with_one_line(tmp_path: Path) -> None:
    env = clean_env(tmp_path / "data", OPENCLAW_LOG="loud")
    result = cli(["gateway", "--port", "0"], env, tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: OPENCLAW_LOG: 'loud' is not a log level; use one of debug, info, warning, error."
    ]


def lines_with(lines: list[dict[str, Any]], request_id: str) -> set[str]:
    return {line["event"] for line in lines if line.get("request_id") == request_id}


def request_id_of(lines: list[dict[str, Any]], event: str, **fields: Any) -> str:
    (found,) = [
        line
        for line in lines
        if line["event"] == event and all(line.get(k) == v for k, v in fields.items())
    ]
    request_id = found.get("request_id")
    assert isinstance(request_id, str) and request_id
    return request_id


async def test_json_logs_carry_one_request_id_per_message_and_no_secret(tmp_path: Path) -> None:
    log_file = tmp_path / "log" / "gateway.log"
    async with AnthropicDouble(api_key=PROVIDER_KEY) as model:
        tg = TelegramDouble(token=TELEGRAM_TOKEN)
        await tg.start()
        try:
            (tmp_path / "config.toml").write_text(
                f'[channels.telegram]\napi_base_url = "{tg.base_url}"\n'
                f"allowed_chats = [{CHAT}]\n"
                f'[logging]\nformat = "json"\nfile = "{log_file}"\n'
            )
            env = clean_env(
                tmp_path / "data",
                OPENCLAW_GATEWAY_TOKEN=TOKEN,
                OPENCLAW_ANTHROPIC_API_KEY=PROVIDER_KEY,
                OPENCLAW_AGENT__BASE_URL=model.base_url,
                OPENCLAW_TELEGRAM_BOT_TOKEN=TELEGRAM_TOKEN,
                OPENCLAW_LOG="warning",  # -v wins: debug lines below prove it
            )
            # The first answer is refused once, so the provider's retry is logged too.
            model.script(
                Reply(status=529, error_type="overloaded_error", retry_after="0"),
                Reply(text="Fine now."),
            )
            gw = await start_gateway(env, tmp_path, "-v")
            try:
                async with aiohttp.ClientSession() as http:
                    status, body, http_rid = await post_chat(http, gw, "over http", "logs")
                    assert status == 200 and body["reply"]["content"] == "Fine now."
                    await ws_chat(http, gw.base_url, "over the socket", "wsx")
                    tg.push(update(message("over telegram", chat_id=CHAT, sender=user(CHAT))))
                    await tg.wait_until(lambda: any(s.chat_id == CHAT for s in tg.sent), 20)
                code, out, err = await signal_and_wait(gw)
            finally:
                kill(gw)
        finally:
            await tg.stop()
    assert code == 0, err[-3000:]
    file_text = log_file.read_text()
    console, in_file = json_lines(err), json_lines(file_text)  # every line is one JSON object
    assert out == ""
    for line in console + in_file:
        assert {"timestamp", "level", "event"} <= line.keys(), line
    assert [line["event"] for line in console] == [line["event"] for line in in_file]
    assert any(line["level"] == "debug" for line in in_file)  # -v beat OPENCLAW_LOG
    # Libraries' lines are in the same shape (uvicorn at shutdown, telegram at debug).
    loggers = {line.get("logger", "") for line in in_file}
    assert "uvicorn.error" in loggers
    assert any(name.startswith("telegram") for name in loggers)

    # One line per message at info from the pipeline (reply_stored); message_accepted is debug.
    assert {"http_request", "provider_retry", "reply_stored"} <= lines_with(in_file, http_rid)
    ws_rid = request_id_of(in_file, "reply_stored", session="webchat:wsx")
    assert {"message_accepted", "reply_stored"} <= lines_with(in_file, ws_rid)  # -v: debug too
    assert {line["level"] for line in in_file if line["event"] == "message_accepted"} == {"debug"}
    tg_rid = request_id_of(in_file, "reply_stored", session=f"telegram:{CHAT}")
    assert {"reply_stored", "reply_delivered"} <= lines_with(in_file, tg_rid)
    assert len({http_rid, ws_rid, tg_rid}) == 3

    for secret in (PROVIDER_KEY, TELEGRAM_TOKEN, TOKEN):
        assert secret not in file_text
        assert secret not in err


async def ws_chat(http: aiohttp.ClientSession, base_url: str, text: str, session: str) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with http.ws_connect(f"{base_url}/ws", headers=headers) as ws:
        await ws.send_json({"type": "chat", "id": "w1", "text": text, "session": session})
        async with asyncio.timeout(20):
            while True:
                frame = await ws.receive_json()
                if frame["type"] in ("reply", "error"):
                    break
    assert frame["type"] == "reply", frame


def test_console_level_follows_openclaw_log_over_the_config(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('[logging]\nlevel = "debug"\nformat = "json"\n')
    env = clean_env(tmp_path / "data", OPENCLAW_GATEWAY_TOKEN=TOKEN, OPENCLAW_LOG="warning")
    gw = GatewayProcess(env, tmp_path, free_port())
    try:
        gw.wait_healthy()
        code, _out, err = gw.stop()
    finally:
        kill(gw)
    assert code == 0
    assert "gateway_listening" not in err  # an info line
    assert {line["level"] for line in json_lines(err)} <= {"warning", "error"}


def test_the_web_chat_link_is_a_json_line_too(tmp_path: Path) -> None:
    env = clean_env(tmp_path / "data", OPENCLAW_LOGGING__FORMAT="json")  # token generated
    gw = GatewayProcess(env, tmp_path, free_port())
    try:
        gw.wait_healthy()
        code, _out, err = gw.stop()
    finally:
        kill(gw)
    assert code == 0
    token = (tmp_path / "data" / "gateway.token").read_text().strip()
    (link,) = [line for line in json_lines(err) if line["event"] == "web_chat_link"]
    assert link["url"].endswith(f"/#token={token}")


def test_secret_shapes_are_redacted_even_when_unknown() -> None:
    from open_clanker.core.logging import Redactor

    redact = Redactor().redact
    discord_token = "MTIzNDU2Nzg5MDEyMzQ1Njc4OQ.GdOubl.loopback-test-token-for-the-discord-double"
    for secret, line in [
        (discord_token, f"login failed for {discord_token}!"),
        (
            "123456789:AAHk-telegram-token-abcdefghijklmnop",
            "GET /bot123456789:AAHk-telegram-token-abcdefghijklmnop/getMe",
        ),
        ("sk-ant-api03-abcdefghijklmnop", "key sk-ant-api03-abcdefghijklmnop refused"),
    ]:
        out = redact(line)
        assert secret not in out and "[REDACTED]" in out


def test_a_line_below_the_level_is_dropped_and_a_level_change_applies_at_once(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    setup_logging("warning", "json")
    log = structlog.get_logger("open_clanker.test")
    log.info("too_quiet")
    log.debug("quieter")
    logging.getLogger().setLevel(logging.INFO)  # what a reload of [logging].level does
    log.info("now_heard", token="Bearer abcdefghijklmnop")
    lines = json_lines(capsys.readouterr().err)
    assert [line["event"] for line in lines] == ["now_heard"]
    assert lines[0]["token"] == "Bearer [REDACTED]"
