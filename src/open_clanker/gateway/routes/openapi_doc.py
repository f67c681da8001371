"""GET /openapi.json behind the bearer token (SPEC §5: only /health, /ready and the page are
open). FastAPI's own route would serve it to anyone, so the app turns that off and this serves
the same document."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from open_clanker.gateway.auth import require_token

OPENAPI_PATH = "/openapi.json"

router = APIRouter(dependencies=[Depends(require_token)])


@router.get(OPENAPI_PATH, include_in_schema=False)
async def openapi_document(request: Request) -> JSONResponse:
    return JSONResponse(request.app.openapi())
