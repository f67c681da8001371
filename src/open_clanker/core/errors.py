"""One exception root; each subclass carries the fields its handler needs (SPEC §5 codes)."""

from __future__ import annotations

from dataclasses import dataclass


class ClankerError(Exception):
    """Base of every error we raise on purpose. `str()` is one calm user-facing sentence."""

    code = "internal_error"
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(ClankerError):
    code = "config_error"

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]


class InputError(ClankerError):
    code = "invalid_input"
    status = 422


class InvalidJSONError(InputError):
    code = "invalid_json"
    status = 400


class MessageTooLongError(InputError):
    code = "message_too_long"
    status = 413


class IdempotencyKeyReusedError(InputError):
    code = "idempotency_key_reused"


class ConflictError(ClankerError):
    code = "conflict"
    status = 409


class IdempotencyInProgressError(ConflictError):
    code = "idempotency_in_progress"


class SupersededError(ConflictError):
    """This replica's claim lapsed mid-turn and another answered the message instead."""

    code = "superseded"


class NotFoundError(ClankerError):
    code = "not_found"
    status = 404


class AuthError(ClankerError):
    code = "unauthorized"
    status = 401


class RateLimitError(ClankerError):
    code = "rate_limited"
    status = 429

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class ContextOverflow:
    """A provider refused a request as too long for the model's context window. The vendor's
    count of the prompt and what the prompt may use, when its error names them."""

    prompt_tokens: int | None = None
    limit: int | None = None


class ProviderError(ClankerError):
    """A model provider failed. `retryable` decides retries; `auth` marks a config problem;
    `context_overflow` a request too long for the model (the caller sends less, not again)."""

    code = "provider_error"
    status = 502

    def __init__(
        self,
        message: str,
        provider: str,
        *,
        retryable: bool = False,
        retry_after: float | None = None,
        status_code: int | None = None,
        auth: bool = False,
        context_overflow: ContextOverflow | None = None,
    ) -> None:
        super().__init__(message)
        self.provider = provider
        self.retryable = retryable
        self.retry_after = retry_after
        self.status_code = status_code
        self.auth = auth
        self.context_overflow = context_overflow


class ChannelError(ClankerError):
    """A platform refused or failed a delivery; `retryable` decides whether the outbox retries."""

    code = "channel_error"
    status = 502

    def __init__(
        self,
        message: str,
        channel: str,
        *,
        retryable: bool = True,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.channel = channel
        self.retryable = retryable
        self.retry_after = retry_after


class StorageError(ClankerError):
    code = "storage_error"
    status = 503


class NotReadyError(ClankerError):
    code = "not_ready"
    status = 503
