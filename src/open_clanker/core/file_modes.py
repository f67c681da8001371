"""Conversations and secrets on disk are the owner's alone: the data dir 0700, the database
(with its -wal/-shm files), the log file and the token file 0600.

Files are created with that mode from the first byte (never widened by the umask after the
fact), and existing ones with a looser mode are tightened when the gateway opens them — only
those this user owns, so a shared directory someone pointed us at is left alone.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import structlog

log = structlog.get_logger("open_clanker.files")

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def tighten(path: Path, mode: int) -> None:
    """Remove group/other bits from an existing path we own; nothing else changes."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return
    if info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & 0o077 == 0:
        return
    try:
        os.chmod(path, mode)
    except OSError as exc:
        log.warning("file_mode_not_fixed", path=str(path), error=exc.strerror)
        return
    log.info("file_mode_fixed", path=str(path), mode=oct(mode))


def private_dir(path: Path) -> None:
    """Create `path` 0700 (missing parents too), or tighten it if it exists."""
    if not path.exists():
        path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
        os.chmod(path, PRIVATE_DIR)  # mkdir's mode passes through the umask
        return
    tighten(path, PRIVATE_DIR)


def private_file(path: Path) -> None:
    """Create an empty `path` 0600 if missing, or tighten it."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    except FileExistsError:
        tighten(path, PRIVATE_FILE)
        return
    os.close(fd)


def open_private_append(path: Path) -> int:
    """An append descriptor on `path`, created 0600 (a rotated log file starts private too)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, PRIVATE_FILE)
    tighten(path, PRIVATE_FILE)
    return fd


def secure_sqlite(db_path: Path) -> None:
    """Before SQLite opens `db_path`: a missing directory made 0700, the file itself created
    0600 — SQLite gives -wal and -shm the database file's mode — and a looser file or side
    file left by an older version tightened."""
    if not db_path.parent.exists():
        private_dir(db_path.parent)
    private_file(db_path)
    for suffix in SQLITE_SIDE_FILES:
        tighten(db_path.with_name(db_path.name + suffix), PRIVATE_FILE)


def warn_if_readable_by_others(path: Path) -> None:
    """One warning line when a secret file can be read by other users."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return
    if mode & 0o044:
        log.warning(
            "token_file_readable_by_others",
            path=str(path),
            mode=oct(mode),
            fix=f"chmod 600 {path}",
        )
