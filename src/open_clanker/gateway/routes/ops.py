"""Operations: reload the config (`open-clanker reload`), rotate and list gateway tokens."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Literal

from fastapi import APIRouter, Depends, Request

from open_clanker.config.paths import token_file
from open_clanker.core.errors import ClankerError, ConfigError, NotReadyError
from open_clanker.gateway.auth import require_token
from open_clanker.gateway.reload import Reloader
from open_clanker.gateway.rotation import TokenRotation
from open_clanker.gateway.runtime import Runtime
from open_clanker.gateway.schemas import ERROR_RESPONSES
from open_clanker.gateway.schemas_ops import (
    ReloadResponse,
    RotatedToken,
    RotateRequest,
    TokenInfo,
    TokenList,
)
from open_clanker.gateway.tokens import Tokens


class ReloadRefusedError(ClankerError):
    """The new config was refused whole; the gateway runs on as it was."""

    code = "config_invalid"
    status = 422


router = APIRouter(dependencies=[Depends(require_token)], responses=ERROR_RESPONSES)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


@router.post(
    "/api/v1/reload",
    response_model=ReloadResponse,
    summary="Re-read the config file and secret files and apply what can change live",
)
async def reload_config(request: Request) -> ReloadResponse:
    reloader: Reloader | None = getattr(request.app.state, "reloader", None)
    if reloader is None:
        raise NotReadyError("This gateway was started without a config to reload.")
    try:
        result = await reloader.reload("api")
    except ConfigError as exc:
        problems = [p for p in exc.problems if p != exc.message]
        raise ReloadRefusedError(" ".join([exc.message, *problems])) from None
    return ReloadResponse.model_validate(result.as_json())


def _rotation(runtime: Runtime) -> TokenRotation:
    if runtime.rotation is None:
        raise NotReadyError("Token rotation is not running.")
    runtime.check_accepting()
    return runtime.rotation


@router.post(
    "/api/v1/tokens",
    status_code=201,
    response_model=RotatedToken,
    summary="Make a new gateway token; the older ones expire after the grace period",
)
async def rotate_token(body: RotateRequest, request: Request) -> RotatedToken:
    runtime: Runtime = request.app.state.runtime
    rotation = _rotation(runtime)
    tokens = runtime.tokens
    # With the generated token in use, the data dir's file follows the newest token, so the
    # CLI on this machine keeps working once the old one expires.
    file_tokens = tokens.values if tokens.generated else ()
    done = await rotation.rotate(
        body.grace_s, file_tokens, token_file() if tokens.generated else None
    )
    if tokens.generated:
        runtime.tokens = Tokens((), generated=True, rotated=tokens.rotated)
    return RotatedToken(
        id=done.id,
        token=done.token,
        created_at=_iso(done.created_at),
        others_expire_at=_iso(done.others_expire_at),
        token_file_updated=done.token_file_updated,
    )


@router.get("/api/v1/tokens", response_model=TokenList, summary="Gateway tokens (never the tokens)")
async def list_tokens(request: Request) -> TokenList:
    runtime: Runtime = request.app.state.runtime
    rotation = _rotation(runtime)
    now = time.time()
    infos = []
    for t in await rotation.list():
        state: Literal["active", "expiring", "expired"] = "active"
        if t.expires_at is not None:
            state = "expiring" if t.expires_at > now else "expired"
        infos.append(
            TokenInfo(
                id=t.id,
                origin="generated" if t.origin == "generated" else "rotated",
                created_at=_iso(t.created_at),
                expires_at=None if t.expires_at is None else _iso(t.expires_at),
                state=state,
            )
        )
    configured = 0 if runtime.tokens.generated else len(runtime.tokens.values)
    return TokenList(tokens=infos, configured=configured)
