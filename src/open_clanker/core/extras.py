"""Optional dependencies: PostgreSQL and Redis support are pip extras, named when missing."""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from open_clanker.core.errors import ConfigError


def require_extra(key: str, what: str, extra: str, modules: Sequence[str]) -> None:
    """Import `modules`, or raise one line that says which `pip install` brings them."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            raise ConfigError(
                f"{key} needs {what} support, which is not installed: "
                f"run pip install 'open-clanker[{extra}]'."
            ) from None
