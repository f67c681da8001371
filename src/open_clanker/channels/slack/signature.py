"""Slack's request signature for the Events API (pure): v0 HMAC-SHA256 of `v0:<ts>:<body>`.

https://api.slack.com/authentication/verifying-requests-from-slack: the timestamp must be
within five minutes (a captured request cannot be replayed later), and the comparison is
constant-time.
"""

from __future__ import annotations

import hashlib
import hmac

MAX_AGE_S = 300


def sign(secret: str, timestamp: str, body: bytes) -> str:
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def signature_problem(
    secret: str, timestamp: str | None, signature: str | None, body: bytes, now: float
) -> str | None:
    """Why the request is not Slack's (None: it is), as a short reason for the log."""
    if not secret:
        return "no signing secret configured"
    if not timestamp or not signature:
        return "missing signature headers"
    if not timestamp.isdigit():
        return "malformed timestamp"
    if abs(now - int(timestamp)) > MAX_AGE_S:
        return "stale timestamp"
    expected = sign(secret, timestamp, body).encode()
    if not hmac.compare_digest(expected, signature.encode("utf-8", "replace")):
        return "bad signature"
    return None
