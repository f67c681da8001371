"""The gateway as a process: start, answer, SIGTERM → exit 0, restart keeps history."""

from __future__ import annotations

import json
import signal
import stat
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.proc import GatewayProcess, clean_env, cli, free_port


def request(
    base: str, method: str, path: str, token: str, body: dict[str, Any] | None = None
) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        base + path,
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def test_fresh_start_answers_and_restart_keeps_history(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = clean_env(data)
    port = free_port()
    gw = GatewayProcess(env, tmp_path, port)
    gw.wait_healthy()
    token_path = data / "gateway.token"
    assert stat.S_IMODE(token_path.stat().st_mode) == 0o600
    token = token_path.read_text().strip()
    answer = request(gw.base_url, "POST", "/api/v1/chat", token, {"text": "hi", "session": "w"})
    assert "hi" in answer["reply"]["content"]
    code, _out, err = gw.stop(signal.SIGTERM)
    assert code == 0
    assert f"#token={token}" in err  # the web chat link, token in the fragment
    assert "Traceback" not in err

    gw2 = GatewayProcess(env, tmp_path, port)  # same port: no stale lock or socket
    gw2.wait_healthy()
    assert token_path.read_text().strip() == token  # the generated token is kept
    history = request(gw2.base_url, "GET", "/api/v1/sessions/w/messages", token)
    assert [m["role"] for m in history["messages"]] == ["user", "assistant"]
    code, _out, _err = gw2.stop(signal.SIGINT)
    assert code == 0


def test_refuses_public_bind_without_token(tmp_path: Path) -> None:
    result = cli(
        ["gateway", "--host", "0.0.0.0", "--port", str(free_port())],
        clean_env(tmp_path / "data"),
        tmp_path,
    )
    assert result.returncode == 1
    assert "OPENCLAW_GATEWAY_TOKEN" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data" / "gateway.token").exists()


def test_port_in_use_is_one_line(tmp_path: Path) -> None:
    env = clean_env(tmp_path / "data")
    port = free_port()
    gw = GatewayProcess(env, tmp_path, port)
    gw.wait_healthy()
    try:
        result = cli(["gateway", "--port", str(port)], env, tmp_path)
        assert result.returncode == 1
        assert f"Cannot listen on 127.0.0.1:{port}" in result.stderr
        assert "Traceback" not in result.stderr
    finally:
        assert gw.stop()[0] == 0


@pytest.mark.parametrize("fmt", ["json", "pretty"])
def test_secrets_never_printed_or_logged(tmp_path: Path, fmt: str) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # providers fail: error paths are where leaks hide
    secrets = {
        "OPENCLAW_GATEWAY_TOKEN": "gwtok-SECRET-abcdef123456",
        "OPENCLAW_OPENAI_API_KEY": "oai-SECRET-key-0987654321",
        "MY_ANTHROPIC_KEY": "ant-SECRET-key-1122334455",
        "OPENCLAW_AGENT__BASE_URL": f"{dead}/v1",
        "OPENCLAW_AGENT__MAX_RETRIES": "0",
        "OPENCLAW_AGENT__FALLBACKS": json.dumps(
            [{"provider": "anthropic", "api_key_env": "MY_ANTHROPIC_KEY", "base_url": dead}]
        ),
        "OPENCLAW_TELEGRAM_BOT_TOKEN": "987654321:tg-SECRET-bot-token-abcdefghijkl",
        "OPENCLAW_CHANNELS__TELEGRAM__API_BASE_URL": dead,
        "OPENCLAW_LOGGING__FORMAT": fmt,
    }
    env = clean_env(tmp_path / "data", **secrets)
    log_file = tmp_path / "gw.log"
    env["OPENCLAW_LOGGING__FILE"] = str(log_file)
    gw = GatewayProcess(env, tmp_path, free_port(), "-v")
    gw.wait_healthy()
    token = secrets["OPENCLAW_GATEWAY_TOKEN"]
    with pytest.raises(urllib.error.HTTPError) as failed:
        request(gw.base_url, "POST", "/api/v1/chat", token, {"text": "hello"})
    assert failed.value.code == 502
    error_body = failed.value.read().decode()
    status = cli(["status", "--json", "--gateway-url", gw.base_url], env, tmp_path)
    assert status.returncode == 0, status.stderr
    wrong = urllib.request.Request(
        gw.base_url + "/api/v1/status", headers={"Authorization": f"Bearer {token}x"}
    )
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(wrong, timeout=5)
    code, out, err = gw.stop()
    assert code == 0
    everything = out + err + status.stdout + status.stderr + log_file.read_text() + error_body
    assert "http_request" in everything  # the logs were really captured
    assert "provider_failed" in everything
    assert "telegram_start_failed" in everything or "telegram_poll_failed" in everything
    for name in (
        "OPENCLAW_GATEWAY_TOKEN",
        "OPENCLAW_OPENAI_API_KEY",
        "MY_ANTHROPIC_KEY",
        "OPENCLAW_TELEGRAM_BOT_TOKEN",
    ):
        assert secrets[name] not in everything, name
    assert "#token=" not in everything  # configured tokens never print the link
