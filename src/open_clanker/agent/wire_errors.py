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

from open_clanker.core.errors import ContextOverflow, ProviderError

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


# "Context too long", as each vendor words it (and OpenAI-compatible servers such as vLLM):
#   OpenAI 400 `context_length_exceeded`: "This model's maximum context length is 8192 tokens.
#     However, your messages resulted in 8227 tokens." (or "you requested 4120 tokens (3120 in
#     the messages, 1000 in the completion)")
#   Anthropic 400 `invalid_request_error`: "prompt is too long: 208656 tokens > 200000 maximum",
#     or "input length and `max_tokens` exceed context limit: 199759 + 8192 > 200000, ..."
#   413 from either: the request is over the byte limit (Anthropic `request_too_large`).
OVERFLOW_STATUSES = frozenset({400, 413, 422})
_OVERFLOW_CODES = frozenset({"context_length_exceeded", "request_too_large"})
_ANTHROPIC_PROMPT = re.compile(r"prompt is too long:\s*(\d+)\s*tokens?\s*>\s*(\d+)", re.I)
_ANTHROPIC_INPUT = re.compile(
    r"exceed context limit:\s*(\d+)\s*\+\s*(\d+)\s*>\s*(\d+)", re.IGNORECASE
)
_OPENAI_MAXIMUM = re.compile(r"maximum context length is\s*(\d+)", re.IGNORECASE)
_OPENAI_PROMPT = re.compile(r"(?:resulted in|requested)\s*(\d+)\s*tokens", re.IGNORECASE)
_OPENAI_PARTS = re.compile(
    r"\((\d+) in (?:the|your) (?:messages|prompt);?,? (\d+) (?:in|for) the completion\)",
    re.IGNORECASE,
)
_OVERFLOW_WORDS = re.compile(
    r"prompt is too long|exceed context limit|maximum context length|context window|"
    r"context_length_exceeded",
    re.IGNORECASE,
)


def _error_fields(body: str) -> tuple[str, str]:
    """(code or type, message) of a vendor error body; empty strings when it has none."""
    try:
        data = json.loads(body)
    except ValueError:
        return "", body
    err = data.get("error", data) if isinstance(data, dict) else data
    if isinstance(err, dict):
        code = err.get("code") or err.get("type") or ""
        message = err.get("message") or ""
        return (code if isinstance(code, str) else ""), (
            message if isinstance(message, str) else ""
        )
    return "", err if isinstance(err, str) else ""


def context_overflow_of(status: int, code: str, message: str) -> ContextOverflow | None:
    """The overflow a vendor's error describes (with the counts it names), or None."""
    if status not in OVERFLOW_STATUSES and status != 200:
        return None
    if status != 413 and code not in _OVERFLOW_CODES and not _OVERFLOW_WORDS.search(message):
        return None
    if found := _ANTHROPIC_PROMPT.search(message):
        return ContextOverflow(int(found[1]), int(found[2]))
    if found := _ANTHROPIC_INPUT.search(message):
        prompt, completion, window = (int(n) for n in found.groups())
        return ContextOverflow(prompt, window - completion)
    window_found = _OPENAI_MAXIMUM.search(message)
    if window_found:
        window = int(window_found[1])
        if parts := _OPENAI_PARTS.search(message):
            return ContextOverflow(int(parts[1]), window - int(parts[2]))
        if prompt_found := _OPENAI_PROMPT.search(message):
            return ContextOverflow(int(prompt_found[1]), window)
        return ContextOverflow(None, window)
    return ContextOverflow()


def error_from_status(
    provider: str, status: int, headers: Mapping[str, str], body: str
) -> ProviderError:
    """The `ProviderError` for a non-2xx answer from a vendor."""
    detail = vendor_message(body)
    said = f": {detail}" if detail else ""
    overflow = context_overflow_of(status, *_error_fields(body))
    if overflow is not None:
        return ProviderError(
            f"{provider} refused the request as too long for the model's context "
            f"(HTTP {status}){said}",
            provider,
            status_code=status,
            context_overflow=overflow,
        )
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
    overflow = context_overflow_of(200, kind, message) if kind or message else None
    return ProviderError(
        f"{provider} reported an error mid-answer: {detail}",
        provider,
        retryable=overflow is None and (kind in RETRYABLE_ERROR_TYPES or not kind),
        context_overflow=overflow,
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
