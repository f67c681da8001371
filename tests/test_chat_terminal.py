"""`open-clanker chat` in a real terminal (a pty) against a real gateway on loopback: line
editing and history with readline, and Ctrl-C to stop an answer."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import pty
import re
import signal
import sqlite3
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from open_clanker.config.model import Config
from tests.doubles.openai_double import OpenAIDouble, Reply
from tests.gw_async import until
from tests.harness import TEST_TOKEN, RunningGateway, running_gateway
from tests.proc import clean_env

UP, LEFT, CTRL_C, CTRL_D = "\x1b[A", "\x1b[D", "\x03", "\x04"
PROMPT = "you> "


class Terminal:
    """A child process on a pty that is its controlling terminal, as in a real shell."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path) -> None:
        self._master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))

        def controlling_tty() -> None:  # runs in the child after setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.proc = subprocess.Popen(
            args,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env={**env, "TERM": "xterm"},
            cwd=cwd,
            start_new_session=True,
            preexec_fn=controlling_tty,
        )
        os.close(slave)
        self.output = ""
        self._changed = asyncio.Event()
        asyncio.get_running_loop().add_reader(self._master, self._read)

    def _read(self) -> None:
        try:
            data = os.read(self._master, 65536)
        except OSError:  # the child closed its end
            data = b""
        if not data:
            asyncio.get_running_loop().remove_reader(self._master)
        self.output += data.decode(errors="replace")
        self._changed.set()

    def type(self, keys: str) -> None:
        os.write(self._master, keys.encode())

    async def wait_for(self, pattern: str, count: int = 1, timeout: float = 20) -> None:
        try:
            async with asyncio.timeout(timeout):
                while len(re.findall(pattern, self.output)) < count:
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"no {pattern!r} ×{count} in {self.output!r}") from None

    async def exit_code(self, timeout: float = 20) -> int:
        try:
            async with asyncio.timeout(timeout):
                while self.proc.poll() is None:
                    await asyncio.sleep(0.02)
        except TimeoutError:
            self.proc.send_signal(signal.SIGKILL)
            raise AssertionError(f"chat did not exit: {self.output!r}") from None
        return self.proc.returncode

    async def quit_at_prompt(self, timeout: float = 20) -> int:
        """Ctrl-C at the prompt, as a user would: again if the first was not noticed. (CPython's
        readline notices a SIGINT that lands between drawing the prompt and waiting for a key
        only at the next key or signal; a test types faster than any person.)"""
        try:
            async with asyncio.timeout(timeout):
                while self.proc.poll() is None:
                    self.type(CTRL_C)
                    for _ in range(50):
                        if self.proc.poll() is not None:
                            break
                        await asyncio.sleep(0.02)
        except TimeoutError:
            self.proc.send_signal(signal.SIGKILL)
            raise AssertionError(f"chat did not quit: {self.output!r}") from None
        return self.proc.returncode

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        loop = asyncio.get_running_loop()
        loop.remove_reader(self._master)
        os.close(self._master)


def chat_in_terminal(gw: RunningGateway, data_dir: Path, cwd: Path, session: str) -> Terminal:
    env = clean_env(data_dir, OPENCLAW_GATEWAY_TOKEN=TEST_TOKEN, OPENCLAW_GATEWAY_URL=gw.base_url)
    args = [sys.executable, "-m", "open_clanker", "chat", "--session", session]
    return Terminal(args, env, cwd)


async def test_line_editing_and_history(data_dir: Path, tmp_path: Path) -> None:
    async with running_gateway() as gw:
        term = chat_in_terminal(gw, data_dir, tmp_path, "keys")
        try:
            await term.wait_for(re.escape(PROMPT))
            term.type("first question\r")
            await term.wait_for("You said: first question")
            await term.wait_for(re.escape(PROMPT), 2)
            term.type(UP)  # the line comes back from history ...
            await term.wait_for(re.escape(PROMPT) + "first question", 2)
            term.type("\r")  # ... and is sent again
            await term.wait_for("You said: first question", 2)
            await term.wait_for(re.escape(PROMPT), 3)
            term.type("helo" + LEFT + "l\r")  # the cursor moved back: "hel" + "l" + "o"
            await term.wait_for("You said: hello")
            await term.wait_for(re.escape(PROMPT), 4)
            term.type(" a secret line\r")  # a leading space: not kept in the history
            await term.wait_for("You said:  a secret line")
            await term.wait_for(re.escape(PROMPT), 5)
            term.type(CTRL_D)
            assert await term.exit_code() == 0
        finally:
            term.close()
    assert "^[[" not in term.output  # arrow keys were understood, not echoed as escape codes
    history = data_dir / "chat_history"
    assert history.stat().st_mode & 0o777 == 0o600
    kept = history.read_text()
    assert "first question" in kept and "hello" in kept and "secret" not in kept


async def test_history_is_reused_by_the_next_chat(data_dir: Path, tmp_path: Path) -> None:
    data_dir.mkdir(parents=True)
    (data_dir / "chat_history").write_text("an older question\n")
    (data_dir / "chat_history").chmod(0o644)
    async with running_gateway() as gw:
        term = chat_in_terminal(gw, data_dir, tmp_path, "again")
        try:
            await term.wait_for(re.escape(PROMPT))
            term.type(UP + "\r")
            await term.wait_for("You said: an older question")
            await term.wait_for(re.escape(PROMPT), 2)
            assert await term.quit_at_prompt() == 0  # Ctrl-C at the prompt quits
        finally:
            term.close()
    assert (data_dir / "chat_history").stat().st_mode & 0o777 == 0o600


async def test_ctrl_c_stops_the_answer_then_quits_at_the_prompt(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENCLAW_OPENAI_API_KEY", "sk-test")
    async with OpenAIDouble() as double:
        # Three words, then silence for an hour: only Ctrl-C ends this answer.
        double.script(Reply(text="It was a dark and stormy night", stall_after=3))
        config = Config.model_validate(
            {"agent": {"provider": "openai", "base_url": double.base_url}}
        )
        async with running_gateway(config) as gw:
            term = chat_in_terminal(gw, data_dir, tmp_path, "story")
            try:
                await term.wait_for(re.escape(PROMPT))
                term.type("tell me a story\r")
                await term.wait_for("It was a ")
                term.type(CTRL_C)
                await term.wait_for(r"\[stopped\]")
                await term.wait_for(re.escape(PROMPT), 2)  # still chatting
                assert term.proc.poll() is None
                assert await term.quit_at_prompt() == 0
            finally:
                term.close()
    with sqlite3.connect(data_dir / "open-clanker.db") as db:
        rows = db.execute(
            "SELECT text, response_json FROM messages WHERE session_key = 'webchat:story'"
            " AND role = 'assistant'"
        ).fetchall()
    assert len(rows) == 1
    assert rows[0][0] == "It was a "
    assert '"finish_reason":"stopped"' in rows[0][1]


async def test_a_second_ctrl_c_while_still_waiting_quits(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first Ctrl-C sends the stop; if the answer still does not come (here the stop ends
    an answer ahead of ours in the same session, and ours then waits on a silent model), the
    second one leaves at once."""
    monkeypatch.setenv("OPENCLAW_OPENAI_API_KEY", "sk-test")
    silent = asyncio.Event()
    async with OpenAIDouble() as double:
        double.script(Reply(text="first in line", stall_after=1), Reply(text="x", hold=silent))
        config = Config.model_validate(
            {"agent": {"provider": "openai", "base_url": double.base_url}}
        )
        async with running_gateway(config) as gw:
            ws_url = gw.base_url.replace("http://", "ws://") + "/ws"
            async with connect(ws_url, additional_headers=gw.auth) as other:
                frame = {"type": "chat", "id": "o", "text": "go", "session": "shared"}
                await other.send(json.dumps(frame))
                await until(lambda: bool(double.requests), "the first answer began")
                term = chat_in_terminal(gw, data_dir, tmp_path, "shared")
                try:
                    await term.wait_for(re.escape(PROMPT))
                    term.type("me too\r")
                    # Ours has reached the gateway and waits behind the other answer.
                    await until(
                        lambda: gw.runtime.pipeline.in_flight == 2, "ours reached the gateway"
                    )
                    term.type(CTRL_C)
                    await until(lambda: len(double.requests) == 2, "ours reached the model")
                    assert term.proc.poll() is None
                    term.type(CTRL_C)
                    assert await term.exit_code() == 0
                finally:
                    term.close()
    assert "Traceback" not in term.output


async def test_only_the_prompt_thread_takes_ctrl_c(data_dir: Path, tmp_path: Path) -> None:
    """The kernel gives a process's SIGINT to any thread that does not block it. Had the
    socket's thread taken it, the main thread would sit in readline and Ctrl-C at the prompt
    would do nothing (seen now and then): every other thread blocks SIGINT."""
    async with running_gateway() as gw:
        term = chat_in_terminal(gw, data_dir, tmp_path, "signals")
        try:
            await term.wait_for(re.escape(PROMPT))
            pid = term.proc.pid
            threads = {}
            for task in Path(f"/proc/{pid}/task").iterdir():
                status = (task / "status").read_text()
                mask = re.search(r"^SigBlk:\s*([0-9a-f]+)$", status, re.M)
                assert mask is not None
                blocked = int(mask[1], 16)
                threads[int(task.name)] = bool(blocked & (1 << (signal.SIGINT - 1)))
            assert threads.pop(pid) is False  # the main thread takes Ctrl-C
            assert threads and all(threads.values()), threads
            assert await term.quit_at_prompt() == 0
        finally:
            term.close()
