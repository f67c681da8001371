"""What a gateway token must be (pure): never blank, sendable in a header, and long enough to
resist guessing when the gateway listens beyond this machine."""

from __future__ import annotations

from collections.abc import Sequence

MIN_PUBLIC_CHARS = 16
WHERE = "server.auth_tokens / OPENCLAW_GATEWAY_TOKEN"
HINT = "make one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"


def token_problem(token: str, loopback_bind: bool) -> str | None:
    """Why this token is refused, as the end of a sentence, or None when it is fine."""
    if not token.strip():
        return "is blank"
    if any(not (33 <= ord(c) <= 126) for c in token):
        return (
            "contains spaces, control or non-ASCII characters, "
            "which an Authorization header cannot carry as given"
        )
    if not loopback_bind and len(token) < MIN_PUBLIC_CHARS:
        return (
            f"is {len(token)} characters long; listening beyond loopback needs at least "
            f"{MIN_PUBLIC_CHARS}"
        )
    return None


def token_problems(tokens: Sequence[str], loopback_bind: bool) -> list[str]:
    """One line per refused token, naming it by position (never by value)."""
    lines = []
    for i, token in enumerate(tokens):
        problem = token_problem(token, loopback_bind)
        if problem is not None:
            lines.append(f"{WHERE}: token {i + 1} of {len(tokens)} {problem}; {HINT}.")
    return lines
