"""Vendor HTTP failures turned into `ProviderError`: what is retryable, for how long, and why.

Pure functions of status, headers and body, so every rule is a row in a table test. The API
key is never an input here, so no message can carry it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import aiohttp

from open_clanker.core.errors import ProviderError

MAX_VENDOR_MESSAGE_CHARS = 200

# 529 is Anthropic's "overloaded"; 408 a request timeout at the vendor's edge.
RETRYABLE_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 529})
AUTH_STATUSES = frozenset({401, 403})

# Error `type`s a vendor may send inside a 200 stream (Anthropic `event: error`, an OpenAI
# `data: {"error": ...}` chunk) that mean "try again", as opposed to "your request is wrong".
RETRYABLE_ERROR_TYPES = frozenset(
    {"overloaded_error", "api_error", "rate_limit_error", "server_error", "timeout_error"}
)


def parse_retry_after(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """Seconds to wait, from `retry-after-ms`, `Retry-After` seconds or an HTTP date."""
    lowered = {k.lower(): v for k, v in headers.items()}
    ms = lowered.get("retry-after-ms", "").strip()
    if ms:
        try:
            return max(float(ms) / 1000, 0.0)
        except ValueError:
            pass
    value = lowered.get("retry-after", "").strip()
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)


# OpenAI echoes a masked key ("Incorrect API key provided: sk-abc***wxyz"); even part of a key
# stays out of our messages and logs.
_KEY_LIKE = re.compile(r"\b(?:sk|key|api)[-_][A-Za-z0-9*_\-]{6,}", re.IGNORECASE)


def _truncate(text: str) -> str:
    text = _KEY_LIKE.sub("[redacted]", " ".join(text.split()))
    if len(text) <= MAX_VENDOR_MESSAGE_CHARS:
        return text
    return text[: MAX_VENDOR_MESSAGE_CHARS - 1] + "…"


def vendor_message(body: str) -> str:
    """The human part of a vendor error body (`{"error": {"message": ...}}`), shortened."""
    try:
        data = json.loads(body)
    except ValueError:
        return _truncate(body)
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return _truncate(err["message"])
        if isinstance(err, str):
            return _truncate(err)
    return _truncate(body)


def error_from_status(
    provider: str, status: int, headers: Mapping[str, str], body: str
) -> ProviderError:
    """The `ProviderError` for a non-2xx answer from a vendor."""
    detail = vendor_message(body)
    said = f": {detail}" if detail else ""
    if status in AUTH_STATUSES:
        return ProviderError(
            f"{provider} refused the API key (HTTP {status}){said}. This is a configuration "
            "problem: check the key set for this provider.",
            provider,
            status_code=status,
            auth=True,
        )
    retryable = status in RETRYABLE_STATUSES or status >= 500
    return ProviderError(
        f"{provider} answered HTTP {status}{said}",
        provider,
        retryable=retryable,
        retry_after=parse_retry_after(headers) if retryable else None,
        status_code=status,
    )


def error_from_stream(provider: str, error: object) -> ProviderError:
    """The `ProviderError` for an error object sent inside a successful (200) stream."""
    kind, message = "", ""
    if isinstance(error, dict):
        kind = str(error.get("type") or error.get("code") or "")
        message = str(error.get("message") or "")
    elif isinstance(error, str):
        message = error
    detail = _truncate(message or kind or "unknown error")
    return ProviderError(
        f"{provider} reported an error mid-answer: {detail}",
        provider,
        retryable=kind in RETRYABLE_ERROR_TYPES or not kind,
    )


def error_from_exception(provider: str, exc: BaseException) -> ProviderError:
    """Transport trouble (connect, read, timeout, cut connection): always worth a retry."""
    if isinstance(exc, TimeoutError):
        what = "did not answer in time"
    elif isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ServerDisconnectedError):
        what = "closed the connection before the answer was complete"
    elif isinstance(exc, aiohttp.ClientConnectionError):
        what = "could not be reached"
    else:
        what = "failed at the HTTP level"
    return ProviderError(f"{provider} {what} ({type(exc).__name__})", provider, retryable=True)


def incomplete_stream(provider: str) -> ProviderError:
    return ProviderError(
        f"{provider} ended the answer stream before it was complete", provider, retryable=True
    )
