"""W3C Trace Context (`traceparent`): one trace id per message, from the caller or made here.

The id travels in a context variable (like `request_id`), is logged as `trace_id` on every
line about the message, and is passed on to the model provider as a child `traceparent`.
"""

from __future__ import annotations

import contextlib
import re
import secrets
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass

import structlog

# version "-" trace-id "-" parent-id "-" flags; lowercase hex only (W3C Trace Context §3.2).
_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")
_INVALID_TRACE = "0" * 32
_INVALID_SPAN = "0" * 16


@dataclass(frozen=True, slots=True)
class TraceContext:
    trace_id: str
    span_id: str
    flags: str = "01"

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"

    def child(self) -> TraceContext:
        """The context for a call this process makes: same trace, a new span of ours."""
        return TraceContext(self.trace_id, secrets.token_hex(8), self.flags)


def parse_traceparent(header: str | None) -> TraceContext | None:
    """A valid header's context, or None (absent or malformed: the caller starts a new one)."""
    if not header:
        return None
    match = _TRACEPARENT.match(header.strip())
    if match is None:
        return None
    version, trace_id, span_id, flags, rest = match.groups()
    if version == "ff" or trace_id == _INVALID_TRACE or span_id == _INVALID_SPAN:
        return None
    if version == "00" and rest:  # version 00 has exactly four fields
        return None
    return TraceContext(trace_id, span_id, flags)


def new_trace() -> TraceContext:
    return TraceContext(secrets.token_hex(16), secrets.token_hex(8))


_current: ContextVar[TraceContext | None] = ContextVar("open_clanker_trace", default=None)


def current() -> TraceContext | None:
    return _current.get()


def current_or_new_traceparent() -> str:
    """An `Inbound`'s default: the trace of the HTTP request it is made in, else a new one
    (a platform event, a WebSocket frame)."""
    ctx = _current.get()
    return (ctx or new_trace()).traceparent


def outgoing_headers() -> dict[str, str]:
    """Headers for a call to a provider: a child of the current trace (none outside one)."""
    ctx = _current.get()
    return {} if ctx is None else {"traceparent": ctx.child().traceparent}


@contextlib.contextmanager
def bound(ctx: TraceContext) -> Iterator[None]:
    """Make `ctx` current and put its `trace_id` on every log line inside."""
    token = _current.set(ctx)
    try:
        with structlog.contextvars.bound_contextvars(trace_id=ctx.trace_id):
            yield
    finally:
        _current.reset(token)


def bound_traceparent(traceparent: str) -> contextlib.AbstractContextManager[None]:
    """`bound` for a stored header; a malformed one starts a fresh trace rather than none."""
    return bound(parse_traceparent(traceparent) or new_trace())
