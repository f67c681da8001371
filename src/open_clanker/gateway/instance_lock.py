"""One gateway per SQLite database: a second one on the same file refuses to start.

SQLite serves one process; its claims are not contested (`Replica.contested` is False), which
is only true if no other gateway writes the same file. An advisory `flock` on a file beside the
database makes that so; the kernel drops it when the process dies, so a crash never leaves a
stale lock behind. PostgreSQL needs no such lock: its replicas coordinate by claims.
"""

from __future__ import annotations

import os
from pathlib import Path

from open_clanker.core.errors import ConfigError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no flock; one process is the operator's care
    fcntl = None  # type: ignore[assignment]


class InstanceLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @classmethod
    def for_storage_url(cls, url: str) -> InstanceLock | None:
        """The lock for a SQLite file URL; None for PostgreSQL or an in-memory database."""
        for prefix in ("sqlite:///", "sqlite+pysqlite:///"):
            if url.startswith(prefix):
                path = url[len(prefix) :]
                if path and path != ":memory:":
                    return cls(Path(path + ".lock"))
        return None

    def acquire(self) -> None:
        if fcntl is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise ConfigError(
                f"Another gateway is already running on {self.path.with_suffix('')}: SQLite "
                "serves one gateway process. Stop it, or use PostgreSQL for several replicas."
            ) from None
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the lock
            self._fd = None
