"""Line editing and history for `open-clanker chat`, with the stdlib `readline`.

Only on a terminal: piped input is read as plain lines (and `readline` is not even imported,
since loading it can write terminal control codes to stdout). The history lives in the data
dir, readable by its owner only (chat lines can be private), and is bounded; a line typed
with a leading space is not kept, as in bash's `ignorespace`.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from types import ModuleType

HISTORY_FILE = "chat_history"
HISTORY_LENGTH = 1000


def _readline() -> ModuleType | None:
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        return None
    try:
        import readline
    except ImportError:  # Windows without pyreadline: plain input still works
        return None
    return readline


class LineInput:
    def __init__(self, history_path: Path | None) -> None:
        self._readline = _readline()
        self._path = history_path
        if self._readline is None or history_path is None:
            return
        self._readline.set_history_length(HISTORY_LENGTH)
        try:
            _create_private(history_path)  # also narrows a file left readable by others
            self._readline.read_history_file(history_path)
        except OSError:
            self._path = None  # a read-only data dir: history for this session only

    @property
    def editing(self) -> bool:
        return self._readline is not None

    def read(self, prompt: str) -> str | None:
        """One line, or None at end of input (Ctrl-D). Ctrl-C raises KeyboardInterrupt."""
        rl = self._readline
        before = rl.get_current_history_length() if rl is not None else 0
        try:
            line = input(prompt)
        except EOFError:
            return None
        if rl is not None and rl.get_current_history_length() > before:
            self._remember(rl, line)  # readline added it (not a repeat of the last line)
        return line

    def _remember(self, rl: ModuleType, line: str) -> None:
        if line.startswith(" "):  # typed with a leading space: not kept
            with contextlib.suppress(ValueError):
                rl.remove_history_item(rl.get_current_history_length() - 1)
            return
        if self._path is None:
            return
        try:
            # Appends the newest entry and truncates the file to the history length.
            rl.append_history_file(1, self._path)
        except OSError:
            self._path = None


def _create_private(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.close(fd)
    os.chmod(path, 0o600)  # also when it existed with a wider mode
