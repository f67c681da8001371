"""Bearer auth for the API routes (SPEC §5). Tokens never travel in a query string.

Each attempt is counted per client address before its answer is known (`AuthLockout.attempt`);
10 failures in a minute lock that address out for 5 minutes, whatever it sends.
"""

from __future__ import annotations

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from open_clanker.core.errors import AuthError, RateLimitError
from open_clanker.gateway.client_ip import client_ip
from open_clanker.gateway.lockout import AuthLockout
from open_clanker.gateway.tokens import Tokens

# Declares the scheme in the OpenAPI document only (auto_error=False: it never refuses);
# require_token below does the checking, with our error shape and the lockout.
BEARER = HTTPBearer(
    scheme_name="bearerAuth",
    description="A gateway token: `Authorization: Bearer <token>`.",
    auto_error=False,
)


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def request_ip(request: Request) -> str:
    runtime = request.app.state.runtime
    peer = request.client.host if request.client else None
    return client_ip(
        peer, request.headers.getlist("x-forwarded-for"), runtime.config.server.trusted_proxies
    )


def locked_out_error(retry_after: float) -> RateLimitError:
    return RateLimitError(
        "Too many failed sign-in attempts from your address; try again later.", retry_after
    )


async def require_token(
    request: Request, _scheme: HTTPAuthorizationCredentials | None = Security(BEARER)
) -> None:
    runtime = request.app.state.runtime
    tokens: Tokens = runtime.tokens
    lockout: AuthLockout = runtime.lockout
    presented = bearer_token(request.headers.get("authorization"))
    valid = presented is not None and tokens.check(presented)
    verdict = await lockout.attempt(request_ip(request), valid)
    if verdict.locked:
        raise locked_out_error(verdict.retry_after)
    if not valid:
        raise AuthError("A valid bearer token is required: send 'Authorization: Bearer <token>'.")
