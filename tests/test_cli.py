"""The command line as a user meets it: one-line errors, exit codes, no secrets."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from open_clanker.cli.main import hoist_global_options
from open_clanker.storage.access import PairingCode
from open_clanker.storage.store import Store
from tests.proc import clean_env, cli, free_port


def test_help_lists_the_commands(tmp_path: Path) -> None:
    result = cli(["--help"], clean_env(tmp_path / "d"), tmp_path)
    assert result.returncode == 0
    for command in (
        "gateway",
        "send",
        "chat",
        "status",
        "config-validate",
        "config-generate",
        "doctor",
        "pairing",
    ):
        assert command in result.stdout


def test_config_generate_then_validate(tmp_path: Path) -> None:
    env = clean_env(
        tmp_path / "d",
        OPENCLAW_GATEWAY_TOKEN="tok-SECRET-999999",
        OPENCLAW_OPENAI_API_KEY="sk-SECRETSECRETSECRET123",
    )
    result = cli(["config-generate", "--path", "c.toml"], env, tmp_path)
    assert result.returncode == 0
    text = (tmp_path / "c.toml").read_text()
    for secret in ("tok-SECRET-999999", "sk-SECRETSECRETSECRET123"):
        assert secret not in text and secret not in result.stdout
    again = cli(["config-generate", "--path", "c.toml"], env, tmp_path)
    assert again.returncode == 1
    assert again.stderr.strip().splitlines() == [
        "error: c.toml already exists; use --force to overwrite it."
    ]
    assert cli(["config-generate", "--path", "c.toml", "--force"], env, tmp_path).returncode == 0
    valid = cli(["-c", "c.toml", "config-validate"], env, tmp_path)
    assert valid.returncode == 0 and "valid" in valid.stdout


def test_config_validate_names_every_problem(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(
        "[agent]\nmodle = 'x'\nmax_tokens = -1\n[server]\nport = 'x'\n"
    )
    result = cli(["config-validate"], clean_env(tmp_path / "d"), tmp_path)
    assert result.returncode == 1
    assert "agent.modle: unknown key (did you mean 'agent.model'?)" in result.stderr
    assert "agent.max_tokens:" in result.stderr
    assert "server.port:" in result.stderr
    assert "Traceback" not in result.stderr


def test_status_when_gateway_is_down(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = cli(["status", "--gateway-url", url], clean_env(tmp_path / "d"), tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: Cannot reach the gateway")
    sent = cli(
        [
            "send",
            "--channel",
            "telegram",
            "--channel-id",
            "1",
            "--message",
            "-v",
            "--gateway-url",
            url,
        ],
        clean_env(tmp_path / "d"),
        tmp_path,
    )
    assert sent.returncode == 1 and "Cannot reach the gateway" in sent.stderr


def test_pairing_commands(tmp_path: Path) -> None:
    data = tmp_path / "d"
    env = clean_env(data)

    async def seed() -> None:
        store = await Store.open(f"sqlite:///{data}/open-clanker.db")
        now = time.time()
        await store.access.create_code(
            PairingCode("ABCD2345", "telegram", "77", "77", now, now + 3600, now)
        )
        await store.close()

    assert cli(["pairing", "list"], env, tmp_path).returncode == 0  # creates the db
    asyncio.run(seed())
    listed = cli(["pairing", "list"], env, tmp_path)
    assert "ABCD2345" in listed.stdout and "telegram:77" in listed.stdout
    approved = cli(["pairing", "approve", "abcd2345"], env, tmp_path)
    assert approved.returncode == 0 and "telegram:77" in approved.stdout
    reused = cli(["pairing", "approve", "ABCD2345"], env, tmp_path)
    assert reused.returncode == 1 and reused.stderr.startswith("error: No pending pairing code")
    assert "telegram:77" in cli(["pairing", "list"], env, tmp_path).stdout
    assert cli(["pairing", "revoke", "telegram:77"], env, tmp_path).returncode == 0
    bad = cli(["pairing", "revoke", "77"], env, tmp_path)
    assert bad.returncode == 1 and "<channel>:<id>" in bad.stderr


def test_global_options_anywhere() -> None:
    assert hoist_global_options(["gateway", "-v", "-c", "x.toml"]) == [
        "-v",
        "-c",
        "x.toml",
        "gateway",
    ]
    assert hoist_global_options(["send", "--message", "-v"]) == ["send", "--message", "-v"]


def test_chat_streams_replies_and_reports_problems(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.proc import GatewayProcess

    token = "chat-test-token-123456"
    env = clean_env(tmp_path / "d", OPENCLAW_GATEWAY_TOKEN=token)
    down = cli(["chat", "--gateway-url", f"http://127.0.0.1:{free_port()}"], env, tmp_path)
    assert down.returncode == 1
    assert down.stderr.strip().splitlines()[-1].startswith("error: Cannot reach the gateway")
    gw = GatewayProcess(env, tmp_path, free_port())
    gw.wait_healthy()
    try:
        talk = subprocess.run(
            [sys.executable, "-m", "open_clanker", "chat", "--session", "term",
             "--gateway-url", gw.base_url],
            input="hello from the terminal\n/status\n",
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert talk.returncode == 0, talk.stderr
        assert "You said: hello from the terminal" in talk.stdout
        assert "Model: echo" in talk.stdout
        wrong = cli(
            ["chat", "--gateway-url", gw.base_url],
            {**env, "OPENCLAW_GATEWAY_TOKEN": "not-the-token"},
            tmp_path,
        )
        assert wrong.returncode == 1
        assert "refused the token" in wrong.stderr
        assert "Traceback" not in wrong.stderr
    finally:
        assert gw.stop()[0] == 0
