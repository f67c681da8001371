"""What the global options set (`-v`, `-c PATH`), and loading the config for a command."""

from __future__ import annotations

from typing import TYPE_CHECKING

from open_clanker.cli.output import fail

if TYPE_CHECKING:
    from open_clanker.config.loader import LoadedConfig


class _State:
    verbose: bool = False
    config_path: str | None = None


state = _State()


def load() -> LoadedConfig:
    """The config as `-c`, `$OPENCLAW_CONFIG` or the search path find it; a problem exits 1."""
    from open_clanker.config.loader import load_config
    from open_clanker.core.errors import ConfigError

    try:
        return load_config(state.config_path)
    except ConfigError as exc:
        fail(exc.message, "config_invalid", exc.problems)
