"""Reload against a running gateway process: SIGHUP and `open-clanker reload` apply tokens,
access, limits and the agent section live, name what needs a restart, refuse an invalid file
whole, re-read `_FILE` secrets, and never drop an open WebSocket or a turn in flight."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

import aiohttp

from tests.doubles.openai_double import OpenAIDouble, Reply
from tests.gw_async import exited, json_lines, kill, start_gateway, until
from tests.proc import GatewayProcess, clean_env, cli

OLD = "reload-old-token-0123456789"
NEW = "reload-new-token-0123456789"


def write_config(path: Path, *, token: str, prompt: str, base_url: str, **extra: str) -> None:
    lines = [
        "[server]",
        f'auth_tokens = ["{token}"]',
        *extra.get("server", "").splitlines(),
        "[agent]",
        'provider = "openai"',
        f'base_url = "{base_url}"',
        f'system_prompt = "{prompt}"',
        "stream = false",
        "[limits]",
        f"messages_per_minute = {extra.get('rate', '20')}",
        "[logging]",
        'format = "json"',
        f'file = "{extra["log_file"]}"' if "log_file" in extra else "",
    ]
    path.write_text("\n".join(lines) + "\n")


async def status_of(http: aiohttp.ClientSession, gw: GatewayProcess, token: str) -> int:
    headers = {"Authorization": f"Bearer {token}"}
    async with http.get(f"{gw.base_url}/api/v1/status", headers=headers) as r:
        return r.status


async def chat(
    http: aiohttp.ClientSession, gw: GatewayProcess, token: str, text: str
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    body = {"text": text, "session": "r"}
    async with http.post(f"{gw.base_url}/api/v1/chat", json=body, headers=headers) as r:
        return r.status, await r.json()


def reload_cli(gw: GatewayProcess, env: dict[str, str], cwd: Path, token: str) -> Any:
    extra = {"OPENCLAW_GATEWAY_TOKEN": token, "OPENCLAW_GATEWAY_URL": gw.base_url}
    mine = {k: v for k, v in env.items() if k != "OPENCLAW_GATEWAY_TOKEN_FILE"}
    return cli(["reload", "--json"], {**mine, **extra}, cwd)


async def test_reload_applies_live_names_restart_and_keeps_connections(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    log_file = tmp_path / "gateway.log"
    async with OpenAIDouble(api_key="") as double:
        write_config(
            config,
            token=OLD,
            prompt="Old prompt.",
            base_url=double.base_url,
            log_file=str(log_file),
        )
        env = clean_env(tmp_path / "data", OPENCLAW_CONFIG=str(config))
        gw = await start_gateway(env, tmp_path)
        try:
            async with aiohttp.ClientSession() as http:
                auth = {"Authorization": f"Bearer {OLD}"}
                ws = await http.ws_connect(f"{gw.base_url}/ws", headers=auth)
                hold = asyncio.Event()
                double.script(Reply(text="Answer on the old settings.", hold=hold))
                in_flight = asyncio.create_task(chat(http, gw, OLD, "before the reload"))
                await until(lambda: len(double.requests) == 1, "the model was called")

                write_config(
                    config,
                    token=NEW,
                    prompt="New prompt.",
                    base_url=double.base_url,
                    server="port = 1",  # needs a restart: named, left as it was
                    log_file=str(log_file),
                )
                result = await asyncio.to_thread(reload_cli, gw, env, tmp_path, OLD)
                assert result.returncode == 0, result.stderr
                body = json.loads(result.stdout)
                assert body["status"] == "applied"
                assert {"server.auth_tokens", "agent.system_prompt"} <= set(body["applied"])
                assert body["restart_required"] == ["server.port"]

                hold.set()  # the turn under way finishes, on the settings it started with
                code, answer = await in_flight
                assert code == 200 and answer["reply"]["content"] == "Answer on the old settings."
                assert double.requests[0].body["messages"][0]["content"] == "Old prompt."

                assert await status_of(http, gw, OLD) == 401
                assert await status_of(http, gw, NEW) == 200
                code, _ = await chat(http, gw, NEW, "after the reload")
                assert code == 200
                assert double.requests[-1].body["messages"][0]["content"] == "New prompt."

                # The WebSocket opened before the reload is still open and answers.
                await ws.send_json({"type": "ping"})
                assert (await ws.receive_json(timeout=10))["type"] == "pong"
                await ws.close()

                # An invalid file is refused whole: the running config stays.
                config.write_text("[server]\nauth_tokens = [\n")
                refused = await asyncio.to_thread(reload_cli, gw, env, tmp_path, NEW)
                assert refused.returncode == 1
                error = json.loads(refused.stderr)["error"]
                assert error["code"] == "config_invalid" and "TOML" in error["message"]
                config.write_text(config.read_text().replace("[\n", '["x"]\nbogus_key = 1\n'))
                gw.proc.send_signal(signal.SIGHUP)
                await until(
                    lambda: log_file.read_text().count('"reload_refused"') == 2,
                    "the SIGHUP reload was refused",
                )
                assert await status_of(http, gw, NEW) == 200
                assert await status_of(http, gw, "x") == 401
            gw.proc.send_signal(signal.SIGTERM)
            code, _out, err = await exited(gw)
        finally:
            kill(gw)
    assert code == 0, err[-3000:]
    lines = json_lines(err)
    reloaded = [line for line in lines if line["event"] == "config_reloaded"]
    assert len(reloaded) == 1 and reloaded[0]["trigger"] == "api"
    (restart,) = [line for line in lines if line["event"] == "reload_needs_restart"]
    assert restart["keys"] == "server.port"
    refusals = [line for line in lines if line["event"] == "reload_refused"]
    assert [r["trigger"] for r in refusals] == ["api", "SIGHUP"]
    assert "bogus_key" in json.dumps(refusals[1])
    assert NEW not in err and OLD not in err  # tokens never reach the log


async def test_file_secrets_reread_on_sighup(tmp_path: Path) -> None:
    token_file = tmp_path / "gateway-token"
    token_file.write_text(OLD + "\n")
    key_file = tmp_path / "openai-key"
    key_file.write_text("sk-first-key\n")
    async with OpenAIDouble(api_key="") as double:
        env = clean_env(
            tmp_path / "data",
            OPENCLAW_GATEWAY_TOKEN_FILE=str(token_file),
            OPENCLAW_OPENAI_API_KEY_FILE=str(key_file),
            OPENCLAW_AGENT__PROVIDER="openai",
            OPENCLAW_AGENT__BASE_URL=double.base_url,
            OPENCLAW_AGENT__STREAM="false",
            OPENCLAW_LOGGING__FORMAT="json",
        )
        gw = await start_gateway(env, tmp_path)
        try:
            async with aiohttp.ClientSession() as http:
                assert (await chat(http, gw, OLD, "one"))[0] == 200
                assert double.requests[-1].headers["authorization"] == "Bearer sk-first-key"
                token_file.write_text(NEW + "\n")
                key_file.write_text("sk-second-key\n")
                gw.proc.send_signal(signal.SIGHUP)

                async def new_token_works() -> None:
                    while await status_of(http, gw, NEW) != 200:
                        await asyncio.sleep(0.05)

                await asyncio.wait_for(new_token_works(), 20)
                assert await status_of(http, gw, OLD) == 401
                assert (await chat(http, gw, NEW, "two"))[0] == 200
                assert double.requests[-1].headers["authorization"] == "Bearer sk-second-key"

                key_file.unlink()  # a secret file gone: the reload is refused, naming it
                result = await asyncio.to_thread(reload_cli, gw, env, tmp_path, NEW)
                assert result.returncode == 1
                message = json.loads(result.stderr)["error"]["message"]
                assert "OPENCLAW_OPENAI_API_KEY_FILE" in message and str(key_file) in message
                assert (await chat(http, gw, NEW, "three"))[0] == 200  # still running as it was
            gw.proc.send_signal(signal.SIGTERM)
            code, _out, err = await exited(gw)
        finally:
            kill(gw)
    assert code == 0, err[-3000:]
    events = [line["event"] for line in json_lines(err)]
    assert "config_reloaded" in events and "reload_refused" in events
    for secret in ("sk-first-key", "sk-second-key", OLD, NEW):
        assert secret not in err


def test_missing_secret_file_at_start_is_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    env = clean_env(tmp_path / "data", OPENCLAW_GATEWAY_TOKEN_FILE=str(missing))
    result = cli(["gateway", "--port", "0"], env, tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "OPENCLAW_GATEWAY_TOKEN_FILE" in lines[0] and str(missing) in lines[0]
    assert "Traceback" not in result.stderr
