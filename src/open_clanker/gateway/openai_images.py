"""An OpenAI client's `image_url` parts, read into data URLs the model can see.

`data:` URLs are checked; http(s) URLs are fetched with the gateway's shared aiohttp session.
Both within the attachment limits: the image types the vendors read, 5 MiB each, at most eight
images and 10 MiB per request, and a timeout per fetch.
"""

from __future__ import annotations

import base64
import binascii

import aiohttp
import structlog

from open_clanker.agent.mapping import VISION_MIME_TYPES
from open_clanker.core.types import Attachment
from open_clanker.gateway.openai_errors import OpenAIRequestError

log = structlog.get_logger("open_clanker.gateway")

MAX_IMAGE_BYTES = 5 * 1024 * 1024
MAX_IMAGES = 8
MAX_TOTAL_BYTES = 10 * 1024 * 1024
FETCH_TIMEOUT_S = 10.0
_ALIASES = {"image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg"}
_TYPES_TEXT = "JPEG, PNG, GIF or WebP"


def _short(url: str) -> str:
    return url if len(url) <= 120 else url[:117] + "..."


def image_mime(raw: str | None) -> str | None:
    """The normalized MIME type if the vendors read it, else None."""
    mime = (raw or "").split(";", 1)[0].strip().lower()
    mime = _ALIASES.get(mime, mime)
    return mime if mime in VISION_MIME_TYPES else None


def _refuse(message: str) -> OpenAIRequestError:
    return OpenAIRequestError(message, "messages", "invalid_image_url")


def _too_big(what: str) -> OpenAIRequestError:
    return _refuse(f"{what} is over {MAX_IMAGE_BYTES // (1024 * 1024)} MiB.")


def data_url_image(url: str) -> tuple[str, str, int]:
    """(mime type, base64 payload, size in bytes) of a base64 image data URL."""
    header, comma, payload = url.removeprefix("data:").partition(",")
    if not comma or not header.endswith(";base64"):
        raise _refuse("An image data URL must be base64: 'data:image/png;base64,...'.")
    mime = image_mime(header.removesuffix(";base64"))
    if mime is None:
        raise _refuse(f"An image data URL must hold {_TYPES_TEXT}.")
    if len(payload) > (MAX_IMAGE_BYTES * 4) // 3 + 4:
        raise _too_big("An image data URL")
    try:
        size = len(base64.b64decode(payload, validate=True))
    except (binascii.Error, ValueError):
        raise _refuse("An image data URL is not valid base64.") from None
    if size > MAX_IMAGE_BYTES:
        raise _too_big("An image data URL")
    return mime, payload, size


class ImageReader:
    """Reads every distinct image URL of one request into an `Attachment` with a data URL."""

    def __init__(self, http: aiohttp.ClientSession) -> None:
        self._http = http

    async def read_all(self, urls: list[str]) -> dict[str, Attachment]:
        if len(urls) > MAX_IMAGES:
            raise _refuse(f"At most {MAX_IMAGES} images are read per request.")
        read: dict[str, Attachment] = {}
        total = 0
        for n, url in enumerate(urls, 1):
            if url.startswith("data:"):
                mime, payload, size = data_url_image(url)
            elif url.startswith(("https://", "http://")):
                mime, data = await self._fetch(url)
                payload, size = base64.b64encode(data).decode("ascii"), len(data)
            else:
                raise _refuse("An image_url must be a data: URL or an http(s) URL.")
            total += size
            if total > MAX_TOTAL_BYTES:
                raise _refuse(f"The images add up to over {MAX_TOTAL_BYTES // (1024 * 1024)} MiB.")
            read[url] = Attachment(
                id=f"image-{n}",
                url=f"data:{mime};base64,{payload}",
                mime_type=mime,
                size_bytes=size,
            )
        return read

    async def _fetch(self, url: str) -> tuple[str, bytes]:
        timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT_S)
        try:
            async with self._http.get(url, timeout=timeout, headers={"accept": "image/*"}) as r:
                if r.status != 200:
                    raise _refuse(
                        f"The image at {_short(url)} could not be read (HTTP {r.status})."
                    )
                mime = image_mime(r.headers.get("content-type"))
                if mime is None:
                    raise _refuse(f"The file at {_short(url)} is not {_TYPES_TEXT}.")
                if (r.content_length or 0) > MAX_IMAGE_BYTES:
                    raise _too_big(f"The image at {_short(url)}")
                data = bytearray()
                async for chunk in r.content.iter_chunked(64 * 1024):
                    data += chunk
                    if len(data) > MAX_IMAGE_BYTES:
                        raise _too_big(f"The image at {_short(url)}")
                return mime, bytes(data)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.info("image_fetch_failed", error=type(exc).__name__)
            raise _refuse(
                f"The image at {_short(url)} could not be read ({type(exc).__name__})."
            ) from None
