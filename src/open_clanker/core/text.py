"""NUL characters (U+0000) are removed from text wherever it enters, the same on every backend.

PostgreSQL cannot store NUL in text (the insert fails) while SQLite keeps it; a NUL means
nothing in a chat message, so it is stripped at every entry — API bodies, WebSocket frames,
platform messages (through `Message`), model output — and once more by a last guard in
storage (`storage/nul_guard.py`) for anything else that reaches a query.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator

NUL = "\x00"


def strip_nul(text: str) -> str:
    return text.replace(NUL, "") if NUL in text else text


def nul_free(value: Any) -> Any:
    # Anything but a string goes on to the field's own validation (and its named error).
    return strip_nul(value) if isinstance(value, str) else value


# A `str` field that loses its NULs before its constraints (min_length…) are checked.
CleanStr = Annotated[str, BeforeValidator(nul_free)]
