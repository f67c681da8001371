"""Durations as people write them: `24h`, `30m`, `90s`, `7d`, `1h30m`, or plain seconds."""

from __future__ import annotations

import re

from open_clanker.core.errors import InputError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def parse_duration(text: str) -> float:
    """Seconds in `text`; an `InputError` saying how to write one otherwise."""
    value = text.strip().lower()
    if re.fullmatch(r"\d+(?:\.\d+)?", value):
        return float(value)
    parts = _PART.findall(value)
    if not value or "".join(n + u for n, u in parts) != value:
        raise InputError(f"{text!r} is not a duration; write it like 24h, 30m, 90s, 7d or 1h30m.")
    return float(sum(float(n) * _UNITS[u] for n, u in parts))
