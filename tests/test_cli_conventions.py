"""CLI conventions: `--json` on every command that prints data (and JSON errors then), shell
completion, NO_COLOR everywhere (CLI and the gateway's own log lines), XDG_CONFIG_HOME."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.doubles.telegram_double import TelegramDouble, message, update, user
from tests.gw_async import TOKEN, exited, kill, start_gateway
from tests.proc import GatewayProcess, clean_env, cli, free_port

ESCAPE = re.compile(r"\x1b\[")
CLI = str(Path(sys.executable).with_name("open-clanker"))


def run_json(args: list[str], env: dict[str, str], cwd: Path) -> Any:
    result = cli([*args, "--json"], env, cwd)
    assert result.returncode == 0, (args, result.stderr)
    return json.loads(result.stdout)


def json_error(args: list[str], env: dict[str, str], cwd: Path) -> dict[str, Any]:
    result = cli([*args, "--json"], env, cwd)
    assert result.returncode == 1, (args, result.stdout)
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    error: dict[str, Any] = json.loads(lines[0])["error"]
    assert error["code"] and error["message"]
    return error


async def test_every_data_command_speaks_json(tmp_path: Path) -> None:
    telegram = TelegramDouble()
    await telegram.start()
    env = clean_env(
        tmp_path / "data",
        OPENCLAW_GATEWAY_TOKEN=TOKEN,
        OPENCLAW_TELEGRAM_BOT_TOKEN=telegram.token,
        OPENCLAW_CHANNELS__TELEGRAM__API_BASE_URL=telegram.base_url,
    )
    gw = await start_gateway(env, tmp_path)
    env["OPENCLAW_GATEWAY_URL"] = gw.base_url
    try:

        def commands() -> dict[str, Any]:
            out = {"status": run_json(["status"], env, tmp_path)}
            out["send"] = run_json(
                ["send", "--channel", "telegram", "--channel-id", "77", "--message", "hi"],
                env,
                tmp_path,
            )
            out["config-validate"] = run_json(["config-validate"], env, tmp_path)
            out["config-generate"] = run_json(
                ["config-generate", "--path", str(tmp_path / "gen.toml")], env, tmp_path
            )
            out["pairing list"] = run_json(["pairing", "list"], env, tmp_path)
            out["token rotate"] = run_json(["token", "rotate", "--grace", "1h"], env, tmp_path)
            out["token list"] = run_json(["token", "list"], env, tmp_path)
            out["reload"] = run_json(["reload"], env, tmp_path)
            out["doctor"] = run_json(["doctor"], env, tmp_path)
            return out

        out = await asyncio.to_thread(commands)
        assert out["status"]["channels"]["telegram"]["state"] in ("connected", "starting")
        assert out["send"]["status"] == "queued"
        assert out["config-validate"] == {"valid": True, "path": None, "warnings": []}
        assert Path(out["config-generate"]["path"]).is_file()
        assert out["pairing list"] == {"pending": [], "allowed": []}
        assert out["token rotate"]["token"] and out["token list"]["configured"] == 1
        assert out["reload"]["status"] in ("applied", "unchanged")
        assert out["doctor"]["ok"] is True
        assert {c["name"] for c in out["doctor"]["checks"]} >= {"config", "storage"}

        # A stranger asks; the code is approved and revoked, all as JSON.
        telegram.push(update(message("hello", chat_id=5, sender=user(5, "bob"))))
        await telegram.wait_until(lambda: any(s.chat_id == 5 for s in telegram.sent), 15)
        (code,) = re.findall(r"code is ([A-Z0-9]{8})", telegram.sent[-1].text)
        listed = await asyncio.to_thread(run_json, ["pairing", "list"], env, tmp_path)
        assert [p["code"] for p in listed["pending"]] == [code]
        approved = await asyncio.to_thread(run_json, ["pairing", "approve", code], env, tmp_path)
        assert approved == {"approved": "telegram:5", "code": code}
        revoked = await asyncio.to_thread(
            run_json, ["pairing", "revoke", "telegram:5"], env, tmp_path
        )
        assert revoked == {"revoked": "telegram:5"}

        # Errors are one JSON object on stderr, with the gateway's own code when it has one.
        def errors() -> list[dict[str, Any]]:
            return [
                json_error(["pairing", "approve", "ZZZZZZZZ"], env, tmp_path),
                json_error(["pairing", "revoke", "nocolon"], env, tmp_path),
                json_error(
                    ["send", "--channel", "discord", "--channel-id", "1", "--message", "x"],
                    env,
                    tmp_path,
                ),
                json_error(["status"], {**env, "OPENCLAW_GATEWAY_TOKEN": "wrong"}, tmp_path),
                json_error(
                    ["status"], {**env, "OPENCLAW_GATEWAY_URL": "http://127.0.0.1:9"}, tmp_path
                ),
                json_error(["token", "rotate", "--grace", "soon"], env, tmp_path),
            ]

        codes = [e["code"] for e in await asyncio.to_thread(errors)]
        assert codes == [
            "not_found",
            "invalid_input",
            "not_found",
            "unauthorized",
            "gateway_unavailable",
            "invalid_input",
        ]
        code_, _out, err = await exited_after_term(gw)
        assert code_ == 0, err[-2000:]
    finally:
        kill(gw)
        await telegram.stop()


async def exited_after_term(gw: GatewayProcess) -> tuple[int, str, str]:
    gw.proc.send_signal(signal.SIGTERM)
    return await exited(gw)


def test_invalid_config_as_json(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("[agent]\nmax_tokenz = 5\n")
    env = clean_env(tmp_path / "data")
    for args in (["config-validate"], ["pairing", "list"]):
        error = json_error(args, env, tmp_path)
        assert error["code"] == "config_invalid"
        assert any("agent.max_tokenz" in p and "max_tokens" in p for p in error["problems"])
    doctor = cli(["doctor", "--json"], env, tmp_path)
    assert doctor.returncode == 1
    report = json.loads(doctor.stdout)
    assert report["ok"] is False and report["checks"][0]["name"] == "config"


def test_xdg_config_home_is_searched(tmp_path: Path) -> None:
    xdg = tmp_path / "xdg"
    (xdg / "open-clanker").mkdir(parents=True)
    (xdg / "open-clanker" / "config.toml").write_text("[agent]\nmax_tokens = 7\n")
    work = tmp_path / "work"
    work.mkdir()
    env = clean_env(tmp_path / "data", XDG_CONFIG_HOME=str(xdg))
    found = run_json(["config-validate"], env, work)
    assert found["path"] == str(xdg / "open-clanker" / "config.toml")
    # ./config.toml still comes first.
    (work / "config.toml").write_text("")
    assert run_json(["config-validate"], env, work)["path"] == "config.toml"


def test_shell_completion(tmp_path: Path) -> None:
    env = clean_env(tmp_path / "data")
    # typer names the shell it finds among the process's ancestors (shellingham): run it from
    # a bash that stays its parent (`; exit $?`: bash would otherwise exec a lone command), not
    # from whatever runs pytest (under make and nohup there may be no shell at all).
    script = subprocess.run(
        ["bash", "-c", f"'{CLI}' --show-completion; exit $?"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert script.returncode == 0 and "_open_clanker_completion" in script.stdout
    completed = subprocess.run(
        [CLI],
        env={
            **env,
            "_OPEN_CLANKER_COMPLETE": "complete_bash",
            "COMP_WORDS": "open-clanker to",
            "COMP_CWORD": "1",
        },
        capture_output=True,
        text=True,
        check=False,
    )
    assert "token" in completed.stdout.split()


class OnATerminal:
    """A process with stdout and stderr on a pseudo-terminal (so colour would be used)."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path) -> None:
        self._primary, secondary = pty.openpty()
        self.proc = subprocess.Popen(args, env=env, cwd=cwd, stdout=secondary, stderr=secondary)
        os.close(secondary)
        self.text = ""

    def read_until(self, done: str | None, timeout: float = 30) -> str:
        """Read until `done` appears (None: until the process closes the terminal)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and (done is None or done not in self.text):
            ready, _, _ = select.select([self._primary], [], [], 0.5)
            if not ready:
                if self.proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(self._primary, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            self.text += data.decode(errors="replace")
        return self.text

    def close(self) -> None:
        os.close(self._primary)
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


def on_a_terminal(args: list[str], env: dict[str, str], cwd: Path) -> str:
    term = OnATerminal(args, env, cwd)
    try:
        return term.read_until(None)
    finally:
        term.close()


@pytest.mark.parametrize("no_color", [False, True])
def test_no_color_in_cli_output(tmp_path: Path, no_color: bool) -> None:
    env = clean_env(tmp_path / "data", TERM="xterm-256color", COLUMNS="120")
    env.pop("NO_COLOR", None)
    if no_color:
        env["NO_COLOR"] = "1"
    outputs = [
        on_a_terminal([CLI, "--help"], env, tmp_path),
        on_a_terminal([CLI, "pairing", "list"], env, tmp_path),
        on_a_terminal([CLI, "doctor"], env, tmp_path),
    ]
    for out in outputs:
        assert out.strip()
        # The same commands do use colour on a terminal when NO_COLOR is unset.
        assert bool(ESCAPE.search(out)) is not no_color, out[:500]


@pytest.mark.parametrize("no_color", [False, True])
def test_no_color_in_gateway_logs(tmp_path: Path, no_color: bool) -> None:
    env = clean_env(tmp_path / "data", TERM="xterm-256color")
    env.pop("NO_COLOR", None)
    if no_color:
        env["NO_COLOR"] = "1"
    term = OnATerminal([CLI, "gateway", "--port", str(free_port())], env, tmp_path)
    try:
        term.read_until("gateway_listening")
        term.proc.send_signal(signal.SIGTERM)
        text = term.read_until(None)
        assert term.proc.wait(30) == 0
    finally:
        term.close()
    assert "gateway_listening" in text and "gateway_stopped" in text
    assert bool(ESCAPE.search(text)) is not no_color, text[:500]
