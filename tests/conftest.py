"""Shared fixtures. Every test runs offline: a connection to anything but loopback fails."""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from hypothesis import settings

# The suite is deterministic: property tests draw the same examples on every run (a fixed
# seed per test, no example database carried between runs). A new example is a new test.
settings.register_profile("deterministic", derandomize=True, database=None)
settings.load_profile("deterministic")

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _check(address: object) -> None:
    if isinstance(address, tuple) and address:
        host = str(address[0])
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            if host not in ("localhost",):
                raise OSError(f"test tried to reach the network: {host}") from None
            return
        if not ip.is_loopback:
            raise OSError(f"test tried to reach the network: {host}")


def _guarded_connect(self: socket.socket, address: object) -> None:
    _check(address)
    return _real_connect(self, address)  # type: ignore[arg-type]


def _guarded_connect_ex(self: socket.socket, address: object) -> int:
    _check(address)
    return _real_connect_ex(self, address)  # type: ignore[arg-type]


socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]

# Keys from the developer's shell must never leak into a test's provider choice.
for _name in list(os.environ):
    if _name.startswith("OPENCLAW_") and not _name.startswith("OPENCLAW_TEST_"):
        del os.environ[_name]
for _name in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY"):
    os.environ.pop(_name, None)


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty data dir and working directory, so no real config or database is touched."""
    d = tmp_path / "data"
    monkeypatch.setenv("OPENCLAW_DATA_DIR", str(d))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    return d


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Let a test set up the gateway's logging; put the process's logging back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        for handler in root.handlers:
            if handler not in handlers:
                handler.close()
        root.handlers[:] = handlers
        root.setLevel(level)
        logging.captureWarnings(False)
        structlog.reset_defaults()
