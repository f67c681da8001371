"""Bearer auth for the API routes (SPEC §5). Tokens never travel in a query string."""

from __future__ import annotations

from fastapi import Request

from open_clanker.core.errors import AuthError
from open_clanker.gateway.tokens import Tokens


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


async def require_token(request: Request) -> None:
    tokens: Tokens = request.app.state.runtime.tokens
    presented = bearer_token(request.headers.get("authorization"))
    if presented is None or not tokens.check(presented):
        raise AuthError("A valid bearer token is required: send 'Authorization: Bearer <token>'.")
