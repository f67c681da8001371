"""The OpenAI-compatible API's pure decisions, table by table: messages to turns, errors to
OpenAI's statuses, data URLs, the client context and its JSON, sampling on each vendor's wire."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from open_clanker.agent import anthropic, openai
from open_clanker.agent.base import ProviderRequest
from open_clanker.core.client_context import (
    ClientContext,
    Sampling,
    capped_max_tokens,
    client_from_json,
    client_to_json,
    model_turns,
)
from open_clanker.core.errors import (
    AuthError,
    ClankerError,
    InvalidJSONError,
    MessageTooLongError,
    NotReadyError,
    ProviderError,
    RateLimitError,
)
from open_clanker.core.types import Attachment, ChatTurn, Role
from open_clanker.gateway.openai_errors import ModelNotFoundError, OpenAIRequestError, describe
from open_clanker.gateway.openai_images import data_url_image, image_mime
from open_clanker.gateway.openai_turns import ClientTurn, conversation, session_name
from open_clanker.gateway.openai_wire import ChatMessage, finish_reason

U, A = Role.USER, Role.ASSISTANT


def msgs(*pairs: tuple[str, Any]) -> list[ChatMessage]:
    return [ChatMessage.model_validate({"role": r, "content": c}) for r, c in pairs]


IMG = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}


@pytest.mark.parametrize(
    ("messages", "system", "history", "newest"),
    [
        ([("user", "hi")], None, (), ClientTurn(U, "hi")),
        (
            [
                ("system", "a"),
                ("user", "q1"),
                ("assistant", "r1"),
                ("developer", "b"),
                ("user", "q2"),
            ],
            "a\n\nb",
            (ClientTurn(U, "q1"), ClientTurn(A, "r1")),
            ClientTurn(U, "q2"),
        ),
        # A prefill after the newest user message is not used.
        ([("user", "q"), ("assistant", "Sure,")], None, (), ClientTurn(U, "q")),
        # Text parts joined; images kept by URL until read.
        (
            [("user", [{"type": "text", "text": "x"}, IMG, {"type": "text", "text": "y"}])],
            None,
            (),
            ClientTurn(U, "x\ny", ("data:image/png;base64,AA==",)),
        ),
        ([("system", ""), ("user", "q")], "", (), ClientTurn(U, "q")),  # empty, as sent
        ([("assistant", None), ("user", "q")], None, (ClientTurn(A, ""),), ClientTurn(U, "q")),
    ],
)
def test_conversation(
    messages: list[tuple[str, Any]],
    system: str | None,
    history: tuple[ClientTurn, ...],
    newest: ClientTurn,
) -> None:
    conv = conversation(msgs(*messages))
    assert (conv.system_prompt, conv.history, conv.newest) == (system, history, newest)


@pytest.mark.parametrize(
    ("messages", "param"),
    [
        ([("assistant", "a")], "messages"),
        ([("system", "s")], "messages"),
        ([("user", "")], "messages"),
        ([("assistant", [IMG]), ("user", "q")], "messages.0.content"),
        ([("system", [IMG]), ("user", "q")], "messages.0.content"),
    ],
)
def test_conversation_refusals(messages: list[tuple[str, Any]], param: str) -> None:
    with pytest.raises(OpenAIRequestError) as caught:
        conversation(msgs(*messages))
    assert caught.value.param == param
    assert caught.value.status == 400


def test_images_are_read_once_per_url() -> None:
    conv = conversation(msgs(("user", [IMG]), ("assistant", "a"), ("user", [IMG, IMG])))
    assert conv.image_urls == ["data:image/png;base64,AA=="]


@pytest.mark.parametrize(
    ("exc", "status", "kind", "code"),
    [
        (AuthError("x"), 401, "invalid_request_error", "invalid_api_key"),
        (RateLimitError("x", 3), 429, "requests", "rate_limit_exceeded"),
        (ModelNotFoundError("x"), 404, "invalid_request_error", "model_not_found"),
        (MessageTooLongError("x"), 413, "invalid_request_error", "message_too_long"),
        (InvalidJSONError("x"), 400, "invalid_request_error", "invalid_json"),
        (OpenAIRequestError("x", "n"), 400, "invalid_request_error", "invalid_value"),
        (ProviderError("x", "openai"), 502, "server_error", "provider_error"),
        (NotReadyError("x"), 503, "server_error", "not_ready"),
        (ClankerError("x"), 500, "server_error", "internal_error"),
    ],
)
def test_errors_in_openai_vocabulary(exc: ClankerError, status: int, kind: str, code: str) -> None:
    assert describe(exc) == (status, kind, code)


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [("stop", "stop"), ("length", "length"), ("max_tokens", "length"), ("content_filter", "stop")],
)
def test_finish_reason(ours: str, theirs: str) -> None:
    assert finish_reason(ours) == theirs


@pytest.mark.parametrize(
    ("header", "name"),
    [(None, None), ("work", "work"), ("openai:work", "work"), (" a:b ", "a:b")],
)
def test_session_name(header: str | None, name: str | None) -> None:
    assert session_name(header) == name


@pytest.mark.parametrize("header", ["", "openai:", "two words", "x" * 201, "tab\there"])
def test_session_name_refusals(header: str) -> None:
    with pytest.raises(OpenAIRequestError):
        session_name(header)


def test_data_url_image() -> None:
    payload = base64.b64encode(b"12345").decode()
    assert data_url_image(f"data:image/jpg;base64,{payload}") == ("image/jpeg", payload, 5)


@pytest.mark.parametrize(
    ("raw", "mime"),
    [
        ("image/PNG", "image/png"),
        ("image/jpeg; q=1", "image/jpeg"),
        ("image/svg+xml", None),
        (None, None),
    ],
)
def test_image_mime(raw: str | None, mime: str | None) -> None:
    assert image_mime(raw) == mime


PHOTO = Attachment(id="image-1", url="data:image/png;base64,AA==", mime_type="image/png")
REF = Attachment(id="image-1", url="inline:image-1", mime_type="image/png")


@pytest.mark.parametrize(
    ("client", "stored", "turns"),
    [
        # Stateless: the client's turns, then the message with its images read.
        (
            ClientContext(history=(ChatTurn(U, "q1"), ChatTurn(A, "r1")), attachments=(PHOTO,)),
            [ChatTurn(U, "q2", (REF,))],
            [ChatTurn(U, "q1"), ChatTurn(A, "r1"), ChatTurn(U, "q2", (PHOTO,))],
        ),
        # A kept session: the stored history, then the message with its images read.
        (
            ClientContext(history=None, attachments=(PHOTO,)),
            [ChatTurn(U, "old"), ChatTurn(A, "ans"), ChatTurn(U, "q2", (REF,))],
            [ChatTurn(U, "old"), ChatTurn(A, "ans"), ChatTurn(U, "q2", (PHOTO,))],
        ),
    ],
)
def test_model_turns(client: ClientContext, stored: list[ChatTurn], turns: list[ChatTurn]) -> None:
    assert model_turns(client, stored) == turns


@pytest.mark.parametrize(
    ("asked", "configured", "sent"), [(None, 1024, 1024), (50, 1024, 50), (5000, 1024, 1024)]
)
def test_capped_max_tokens(asked: int | None, configured: int, sent: int) -> None:
    assert capped_max_tokens(ClientContext(max_tokens=asked), configured) == sent


@pytest.mark.parametrize(
    "client",
    [
        ClientContext(),
        ClientContext(
            system_prompt="s",
            history=(ChatTurn(U, "q", (PHOTO,)), ChatTurn(A, "r")),
            attachments=(PHOTO,),
            max_tokens=9,
            sampling=Sampling(temperature=0.5, top_p=0.9, stop=("x", "y"), user="u"),
        ),
    ],
)
def test_client_context_json_round_trip(client: ClientContext) -> None:
    assert client_from_json(client_to_json(client)) == client


def test_no_client_context_in_json_is_none() -> None:
    assert client_from_json(None) is None


def request(sampling: Sampling) -> ProviderRequest:
    return ProviderRequest("sys", (ChatTurn(U, "q"),), 100, sampling)


@pytest.mark.parametrize(
    ("sampling", "openai_fields", "anthropic_fields"),
    [
        (Sampling(), {}, {}),
        (
            Sampling(temperature=1.5, top_p=0.5, stop=("END", " "), user="u1"),
            {"temperature": 1.5, "top_p": 0.5, "stop": ["END", " "], "user": "u1"},
            # Anthropic: temperature 0-1, and not together with top_p; no blank stop sequence.
            {"temperature": 1.0, "stop_sequences": ["END"], "metadata": {"user_id": "u1"}},
        ),
        (Sampling(top_p=0.5), {"top_p": 0.5}, {"top_p": 0.5}),
    ],
)
def test_sampling_on_each_vendors_wire(
    sampling: Sampling, openai_fields: dict[str, Any], anthropic_fields: dict[str, Any]
) -> None:
    keys = ("temperature", "top_p", "stop", "user", "stop_sequences", "metadata")
    o = openai.request_body("m", request(sampling), stream=False)
    a = anthropic.request_body("m", request(sampling), stream=False)
    assert {k: v for k, v in o.items() if k in keys} == openai_fields
    assert {k: v for k, v in a.items() if k in keys} == anthropic_fields
