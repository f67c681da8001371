"""Wire shapes of the HTTP API (request bodies and responses), for validation and OpenAPI."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from open_clanker.core.text import CleanStr
from open_clanker.core.types import AgentResponse, Message


class ErrorDetail(BaseModel):
    code: str = Field(examples=["invalid_input"])
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: CleanStr = Field(min_length=1, description="What the user says (NULs are removed).")
    session: CleanStr | None = Field(
        None, max_length=400, description='Session key or bare name ("work" means "api:work").'
    )
    stream: bool = False


class ChatResponse(BaseModel):
    session: str
    message: Message
    reply: AgentResponse


class SendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel: str = Field(min_length=1, max_length=32)
    channel_id: CleanStr = Field(min_length=1, max_length=255)
    text: CleanStr = Field(min_length=1)


class SendResponse(BaseModel):
    id: str
    status: str


class SessionOut(BaseModel):
    key: str
    channel: str
    channel_id: str
    created_at: str
    updated_at: str
    message_count: int


class SessionList(BaseModel):
    sessions: list[SessionOut]


class MessageList(BaseModel):
    session: str
    messages: list[Message]


class ResetResponse(BaseModel):
    session: str
    status: str


class StopResponse(BaseModel):
    session: str
    stopped: bool = Field(description="False when no answer was running in that session.")


ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorBody, "description": desc}
    for code, desc in {
        400: "Unparsable JSON (invalid_json)",
        401: "Missing or wrong bearer token (unauthorized)",
        404: "Unknown session or channel (not_found)",
        413: "Text over max_message_chars (message_too_long)",
        422: "Missing or mistyped fields (invalid_input)",
        429: "Rate limited (rate_limited); see Retry-After",
        502: "Every model provider failed (provider_error)",
        503: "Not ready (not_ready)",
    }.items()
}
