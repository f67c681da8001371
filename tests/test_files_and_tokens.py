"""Files on disk are the owner's alone (issue 13, item 10) and gateway tokens are never blank
or short on a public bind (item 11); `status` prints markup in values as text (item 14)."""

from __future__ import annotations

import json
import os
import signal
import stat
import urllib.request
from pathlib import Path

import pytest

from open_clanker.config.token_rules import MIN_PUBLIC_CHARS, token_problem
from tests.proc import GatewayProcess, clean_env, cli, free_port

TOKEN = "files-test-token-0123456789"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _chat(gw: GatewayProcess, token: str) -> None:
    body = json.dumps({"text": "keep this private", "session": "p"}).encode()
    req = urllib.request.Request(
        f"{gw.base_url}/api/v1/chat",
        data=body,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200


def test_data_dir_database_wal_and_log_are_private(tmp_path: Path) -> None:
    data, log = tmp_path / "data", tmp_path / "logs" / "gateway.log"
    env = clean_env(data, OPENCLAW_GATEWAY_TOKEN=TOKEN, OPENCLAW_LOGGING__FILE=str(log))
    usual = os.umask(0o022)  # the usual umask, inherited: files would be 0644 by default
    try:
        gw = GatewayProcess(env, tmp_path, free_port())
    finally:
        os.umask(usual)
    try:
        gw.wait_healthy()
        _chat(gw, TOKEN)
        db = data / "open-clanker.db"
        assert mode(data) == 0o700
        for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm"), log):
            assert path.exists(), path
            assert mode(path) == 0o600, (path, oct(mode(path)))
    finally:
        assert gw.stop(signal.SIGTERM)[0] == 0


def test_existing_loose_modes_are_tightened_and_a_readable_token_file_warned(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    env = clean_env(data, OPENCLAW_LOGGING__FORMAT="json")  # the generated token is in use
    first = GatewayProcess(env, tmp_path, free_port())
    first.wait_healthy()
    assert first.stop()[0] == 0
    db = data / "open-clanker.db"
    token_file = data / "gateway.token"
    # As an older version (or a careless copy) left them.
    os.chmod(data, 0o755)
    for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
        if path.exists():
            os.chmod(path, 0o644)
    os.chmod(token_file, 0o644)
    second = GatewayProcess(env, tmp_path, free_port())
    try:
        second.wait_healthy()
        _chat(second, token_file.read_text().strip())
        assert mode(data) == 0o700
        assert mode(db) == 0o600
        assert mode(Path(f"{db}-wal")) == 0o600
    finally:
        code, _out, err = second.stop()
    assert code == 0
    warnings = [line for line in err.splitlines() if "token_file_readable_by_others" in line]
    assert len(warnings) == 1
    assert json.loads(warnings[0])["fix"] == f"chmod 600 {token_file}"


@pytest.mark.parametrize(
    ("token", "loopback", "problem"),
    [
        ("a" * MIN_PUBLIC_CHARS, False, None),
        ("correct-horse-battery-staple", False, None),
        ("short", True, None),  # this machine only: the owner's choice
        ("short", False, "is 5 characters long"),
        ("a" * (MIN_PUBLIC_CHARS - 1), False, "is 15 characters long"),
        ("", True, "is blank"),
        (" ", True, "is blank"),
        ("\t\n", False, "is blank"),
        ("has space-inside-0123456789", False, "contains spaces"),
        ("trailing-space-0123456789 ", True, "contains spaces"),
        ("non-ascii-tökén-0123456789", False, "non-ASCII"),
        ("ctrl-\x07-0123456789abcdef", False, "control"),
    ],
)
def test_token_rule(token: str, loopback: bool, problem: str | None) -> None:
    found = token_problem(token, loopback)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


@pytest.mark.parametrize(
    ("token", "host", "expected"),
    [
        ("a", "0.0.0.0", "token 1 of 1 is 1 characters long"),
        (" ", "127.0.0.1", "token 1 of 1 is blank"),
        (" ", "0.0.0.0", "token 1 of 1 is blank"),
    ],
)
def test_gateway_refuses_the_token_in_one_line(
    tmp_path: Path, token: str, host: str, expected: str
) -> None:
    env = clean_env(tmp_path / "data", OPENCLAW_GATEWAY_TOKEN=token)
    result = cli(["gateway", "--host", host, "--port", str(free_port())], env, tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    # The one line naming the problem (after config-validate's heading, when the config
    # itself says so; beside the log's config_loaded line otherwise).
    naming = [line for line in result.stderr.splitlines() if "OPENCLAW_GATEWAY_TOKEN" in line]
    assert len(naming) == 1, result.stderr
    assert expected in naming[0]


def test_config_validate_names_a_blank_token(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('[server]\nauth_tokens = ["ok-token-0123456789", " "]\n')
    result = cli(["config-validate"], clean_env(tmp_path / "data"), tmp_path)
    assert result.returncode == 1
    assert "token 2 of 2 is blank" in result.stderr
    assert "ok-token-0123456789" not in result.stderr  # named by position, never by value


def test_status_prints_rich_markup_in_values_as_text(tmp_path: Path) -> None:
    env = clean_env(
        tmp_path / "data",
        OPENCLAW_GATEWAY_TOKEN=TOKEN,
        OPENCLAW_AGENT__PROVIDER="echo",
        OPENCLAW_AGENT__MODEL="[/][bold red]model[/]",
    )
    gw = GatewayProcess(env, tmp_path, free_port())
    try:
        gw.wait_healthy()
        result = cli(["status", "--gateway-url", gw.base_url], env, tmp_path)
    finally:
        assert gw.stop()[0] == 0
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "[/][bold red]model[/]" in result.stdout
