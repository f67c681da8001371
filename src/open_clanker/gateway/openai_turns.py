"""OpenAI messages turned into our `Inbound` (pure): the newest user message is the message, the
rest is the client's context; and a finished turn turned back into the answer or its error."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from open_clanker.core.client_context import ClientContext, Sampling
from open_clanker.core.errors import ClankerError, ProviderError, SupersededError
from open_clanker.core.types import (
    AgentResponse,
    Attachment,
    ChannelType,
    ChatTurn,
    Inbound,
    Message,
    MessageMetadata,
    Role,
    SessionKey,
    client_session_key,
    session_key,
)
from open_clanker.gateway.openai_errors import ModelNotFoundError, OpenAIRequestError
from open_clanker.gateway.openai_wire import (
    MODEL_ID,
    ChatCompletionRequest,
    ChatMessage,
    ImagePart,
    TextPart,
    completion,
    completion_id,
)
from open_clanker.pipeline.context import Ending, Turn
from open_clanker.storage.idempotency import StoredAnswer

MAX_STOP_SEQUENCES = 4  # as OpenAI's API
MAX_SESSION_NAME = 200


@dataclass(frozen=True, slots=True)
class ClientTurn:
    """One user or assistant message as sent: its text and its images' URLs (not read yet)."""

    role: Role
    text: str
    image_urls: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Conversation:
    """`system_prompt` None: the client sent no system or developer message."""

    system_prompt: str | None
    history: tuple[ClientTurn, ...]  # before the newest user message
    newest: ClientTurn

    @property
    def image_urls(self) -> list[str]:
        urls = [u for t in (*self.history, self.newest) for u in t.image_urls]
        return list(dict.fromkeys(urls))  # each read once


def check_request(req: ChatCompletionRequest) -> None:
    """What OpenAI's fields allow but this model does not do."""
    if req.model != MODEL_ID:
        raise ModelNotFoundError(
            f"The model '{req.model[:100]}' does not exist here; this gateway serves "
            f"'{MODEL_ID}' (GET /v1/models)."
        )
    if req.n is not None and req.n > 1:
        raise OpenAIRequestError("Only one choice per request is offered: n must be 1.", "n")
    if req.tools:
        raise OpenAIRequestError(
            "Tools are not supported by this gateway; send the request without 'tools'.", "tools"
        )
    if isinstance(req.stop, list) and len(req.stop) > MAX_STOP_SEQUENCES:
        raise OpenAIRequestError(
            f"At most {MAX_STOP_SEQUENCES} stop sequences are allowed.", "stop"
        )


def session_name(header: str | None) -> str | None:
    """The `X-Session-Key` name (`work` or `openai:work`); None: stateless."""
    if header is None:
        return None
    name = header.strip().removeprefix(f"{ChannelType.OPENAI.value}:")
    if not name or len(name) > MAX_SESSION_NAME or not name.isprintable() or " " in name:
        raise OpenAIRequestError(
            f"X-Session-Key must be a name of 1 to {MAX_SESSION_NAME} visible characters "
            "without spaces.",
            "X-Session-Key",
        )
    return name


def _parts(msg: ChatMessage, index: int) -> tuple[str, tuple[str, ...]]:
    if msg.content is None or isinstance(msg.content, str):
        return msg.content or "", ()
    texts = [p.text for p in msg.content if isinstance(p, TextPart)]
    images = tuple(p.image_url.url for p in msg.content if isinstance(p, ImagePart))
    if images and msg.role != "user":
        raise OpenAIRequestError(
            f"Images are read only in user messages (message {index} is '{msg.role}').",
            f"messages.{index}.content",
        )
    return "\n".join(texts), images


def conversation(messages: list[ChatMessage]) -> Conversation:
    """System and developer messages become the system prompt (in order); the newest user
    message is the one stored and answered; what came before it is the context. Assistant
    messages after it (a prefill) are not used."""
    system: list[str] = []
    turns: list[ClientTurn] = []
    for index, msg in enumerate(messages):
        text, images = _parts(msg, index)
        if msg.role in ("system", "developer"):
            system.append(text)
        else:
            turns.append(ClientTurn(Role(msg.role), text, images))
    last_user = max((i for i, t in enumerate(turns) if t.role is Role.USER), default=None)
    if last_user is None:
        raise OpenAIRequestError("The messages must include a user message.", "messages")
    newest = turns[last_user]
    if not newest.text.strip() and not newest.image_urls:
        raise OpenAIRequestError("The last user message is empty.", "messages")
    return Conversation(
        system_prompt="\n\n".join(system) if system else None,
        history=tuple(turns[:last_user]),
        newest=newest,
    )


def sampling(req: ChatCompletionRequest) -> Sampling:
    stop = () if req.stop is None else (req.stop,) if isinstance(req.stop, str) else req.stop
    return Sampling(
        temperature=req.temperature, top_p=req.top_p, stop=tuple(stop), user=req.user or None
    )


def image_reference(url: str, read: Attachment) -> Attachment:
    """What the stored message keeps of an image: its URL, never the bytes of an inline one."""
    ref = url if url.startswith(("https://", "http://")) else f"inline:{read.id}"
    return read.model_copy(update={"url": ref})


def openai_inbound(
    req: ChatCompletionRequest,
    conv: Conversation,
    images: dict[str, Attachment],
    name: str | None,
    request_id: str | None,
) -> Inbound:
    """Stateless (`name` None): a fresh session, the client's turns as context. With a session
    name: session `openai:<name>`, whose stored history is the context."""
    key: SessionKey = (
        session_key(ChannelType.OPENAI, name)
        if name is not None
        else client_session_key(None, ChannelType.OPENAI)
    )
    newest = conv.newest
    history = None
    if name is None:
        history = tuple(
            ChatTurn(t.role, t.text, tuple(images[u] for u in t.image_urls)) for t in conv.history
        )
    client = ClientContext(
        system_prompt=conv.system_prompt,
        history=history,
        attachments=tuple(images[u] for u in newest.image_urls),
        max_tokens=req.max_completion_tokens or req.max_tokens,
        sampling=sampling(req),
    )
    refs = tuple(image_reference(u, images[u]) for u in newest.image_urls)
    msg = Message(
        channel_type=ChannelType.OPENAI,
        channel_id=key.split(":", 1)[1],
        sender=req.user or ChannelType.OPENAI.value,
        text=newest.text,
        session=key,
        metadata=MessageMetadata(attachments=refs),
    )
    return Inbound(message=msg, request_id=request_id or msg.id, client=client)


def answer_of(turn: Turn) -> AgentResponse:
    """The finished turn's answer (a model's or a command's), or the error it ended with."""
    if turn.ending is Ending.ANSWERED and turn.response is not None:
        return turn.response
    if turn.ending is Ending.COMMAND:
        return _gateway_answer(turn.notice or "")
    if turn.ending is Ending.FAILED and isinstance(turn.error, ProviderError):
        raise ProviderError(
            f"The model provider '{turn.error.provider}' failed: {turn.error.message}",
            turn.error.provider,
        )
    if turn.error is not None:
        raise turn.error
    if turn.ending is Ending.SUPERSEDED:
        raise SupersededError(
            "This message was answered by another replica while this one stalled; "
            "read the answer from the session's messages."
        )
    raise ClankerError("The message was not processed.")


def _gateway_answer(text: str) -> AgentResponse:
    return AgentResponse(content=text, model=MODEL_ID, provider="gateway")


def _created(msg: Message) -> int:
    return int(msg.timestamp.timestamp())


def turn_completion(turn: Turn) -> dict[str, Any]:
    """The `chat.completion` of a finished turn (raises the error it ended with)."""
    return completion(completion_id(turn.message.id), _created(turn.message), answer_of(turn))


def stored_completion(answer: StoredAnswer) -> dict[str, Any]:
    """An earlier request's `chat.completion`, read back from storage (an Idempotency-Key
    repeat): the same id and text as the first answer."""
    assert answer.message is not None
    response = answer.response or _gateway_answer("")
    if answer.reply is not None:
        response = response.model_copy(update={"content": answer.reply.text})
    return completion(completion_id(answer.message.id), _created(answer.message), response)
