"""Where things live on disk: the config search path and the data dir (SPEC §4)."""

from __future__ import annotations

import os
from pathlib import Path


def config_search_path() -> list[Path]:
    """Candidates after `--config` and `$OPENCLAW_CONFIG`, first match wins."""
    xdg = os.environ.get("XDG_CONFIG_HOME")
    user = Path(xdg).expanduser() if xdg else Path.home() / ".config"
    return [
        Path("config.toml"),
        user / "open-clanker" / "config.toml",
        Path("/etc/open-clanker/config.toml"),
    ]


def data_dir() -> Path:
    explicit = os.environ.get("OPENCLAW_DATA_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "open-clanker"


def default_storage_url() -> str:
    return f"sqlite:///{data_dir() / 'open-clanker.db'}"


def token_file() -> Path:
    return data_dir() / "gateway.token"
