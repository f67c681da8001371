"""The web chat page and its static files (no auth: the page asks for the token itself)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from open_clanker.core.errors import NotFoundError

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

router = APIRouter(include_in_schema=False)


@router.get("/")
async def index() -> FileResponse:
    page = STATIC_DIR / "index.html"
    if not page.is_file():
        raise NotFoundError("The web chat page is not installed.")
    return FileResponse(page, headers={"Cache-Control": "no-cache"})
