"""The last guard for NUL characters: every string a query binds loses its NULs, on SQLite and
PostgreSQL alike, so no text that slipped past the entries can fail an insert on one backend
and be kept on the other (see `core/text.py`)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from open_clanker.core.text import NUL, strip_nul


def clean(value: Any) -> Any:
    """`value` (a string, or strings nested in tuples, lists, dicts) without NULs; the same
    object when it holds none."""
    if isinstance(value, str):
        return strip_nul(value)
    if isinstance(value, tuple):
        return tuple(clean(v) for v in value) if _has_nul(value) else value
    if isinstance(value, list):
        return [clean(v) for v in value] if _has_nul(value) else value
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()} if _has_nul(value.values()) else value
    return value


def has_nul(values: Any) -> bool:
    """Whether any string among `values` (nested in tuples, lists, dicts) holds a NUL."""
    return _has_nul(values)


def _has_nul(values: Any) -> bool:
    for v in values:
        if isinstance(v, str):
            if NUL in v:
                return True
        elif isinstance(v, tuple | list | dict) and _has_nul(
            v.values() if isinstance(v, dict) else v
        ):
            return True
    return False


def install_nul_guard(engine: sa.Engine) -> None:
    # Keep SQLAlchemy's own argument names: with other names (`_conn`, `_executemany`…) the
    # replica tests' outbox stalled, so the event system evidently reads them.
    def strip_nuls(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
    ) -> tuple[str, Any]:
        return statement, clean(parameters)

    sa.event.listen(engine, "before_cursor_execute", strip_nuls, retval=True)
