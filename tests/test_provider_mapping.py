"""Pure provider decisions, table-driven: history mapping, SSE, HTTP errors, wire parsing, auto."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from open_clanker.agent import anthropic, openai
from open_clanker.agent.config import AgentConfig
from open_clanker.agent.mapping import (
    attachment_note,
    normalize_turns,
    to_anthropic_messages,
    to_openai_messages,
)
from open_clanker.agent.select import choose_provider
from open_clanker.agent.sse import SSEEvent, SSEParser
from open_clanker.agent.wire_errors import (
    error_from_exception,
    error_from_status,
    error_from_stream,
    parse_retry_after,
    vendor_message,
)
from open_clanker.core.errors import ConfigError, ProviderError
from open_clanker.core.types import Attachment, ChatTurn, Role

U, A = Role.USER, Role.ASSISTANT
PNG = Attachment(id="a1", url="https://files.example/cat.png", mime_type="image/png")
PDF = Attachment(
    id="a2",
    url="https://files.example/r.pdf",
    mime_type="application/pdf",
    size_bytes=2048,
    name="report.pdf",
)


def t(role: Role, text: str, *atts: Attachment) -> ChatTurn:
    return ChatTurn(role, text, tuple(atts))


# --- history -> alternating turns -----------------------------------------------------------

NORMALIZE_CASES: list[tuple[str, list[ChatTurn], bool, list[tuple[Role, str]]]] = [
    (
        "three turns kept in order",
        [t(U, "a"), t(A, "b"), t(U, "c")],
        False,
        [(U, "a"), (A, "b"), (U, "c")],
    ),
    (
        "same-role neighbours merged",
        [t(U, "a"), t(U, "b"), t(A, "c"), t(A, "d"), t(U, "e")],
        False,
        [(U, "a\n\nb"), (A, "c\n\nd"), (U, "e")],
    ),
    ("leading assistant dropped for anthropic", [t(A, "hi!"), t(U, "q")], False, [(U, "q")]),
    ("leading assistant kept for openai", [t(A, "hi!"), t(U, "q")], True, [(A, "hi!"), (U, "q")]),
    ("trailing assistant dropped", [t(U, "q"), t(A, "a"), t(A, "more")], False, [(U, "q")]),
    (
        "empty turns dropped before merging",
        [t(U, "a"), t(A, "  "), t(U, "b")],
        False,
        [(U, "a\n\nb")],
    ),
    ("only assistant turns leave nothing", [t(A, "x")], True, []),
    ("empty history", [], False, []),
]


@pytest.mark.parametrize(
    ("turns", "assistant_first", "expected"),
    [c[1:] for c in NORMALIZE_CASES],
    ids=[c[0] for c in NORMALIZE_CASES],
)
def test_normalize_turns(
    turns: list[ChatTurn], assistant_first: bool, expected: list[tuple[Role, str]]
) -> None:
    out = normalize_turns(turns, allow_assistant_first=assistant_first)
    assert [(x.role, x.text) for x in out] == expected


def test_merging_keeps_attachments_of_both_turns() -> None:
    (merged,) = normalize_turns([t(U, "a", PNG), t(U, "", PDF)], allow_assistant_first=False)
    assert merged.attachments == (PNG, PDF)
    assert merged.text == "a"


ANTHROPIC_CASES: list[tuple[str, list[ChatTurn], list[dict[str, Any]]]] = [
    (
        "plain text as strings",
        [t(U, "a"), t(A, "b"), t(U, "c")],
        [
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": "b"},
            {"role": "user", "content": "c"},
        ],
    ),
    (
        "image as url block before the text",
        [t(U, "what is this?", PNG)],
        [
            {
                "role": "user",
                "content": [
                    {"type": "image", "source": {"type": "url", "url": PNG.url}},
                    {"type": "text", "text": "what is this?"},
                ],
            }
        ],
    ),
    (
        "image alone has no empty text block",
        [t(U, "", PNG)],
        [
            {
                "role": "user",
                "content": [{"type": "image", "source": {"type": "url", "url": PNG.url}}],
            }
        ],
    ),
    (
        "data url becomes base64 source",
        [t(U, "x", Attachment(id="d", url="data:image/gif;base64,R0lG", mime_type="image/gif"))],
        [
            {
                "role": "user",
                "content": [
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/gif", "data": "R0lG"},
                    },
                    {"type": "text", "text": "x"},
                ],
            }
        ],
    ),
    (
        "other files become a note",
        [t(U, "read this", PDF)],
        [{"role": "user", "content": "read this\n[attachment: report.pdf, application/pdf, 2 KB]"}],
    ),
    (
        "unsupported image type becomes a note",
        [t(U, "", Attachment(id="s1", url="u", mime_type="image/svg+xml"))],
        [{"role": "user", "content": "[attachment: s1, image/svg+xml]"}],
    ),
    (
        "an assistant's image is only named",
        [t(U, "draw"), t(A, "here", PNG), t(U, "thanks")],
        [
            {"role": "user", "content": "draw"},
            {"role": "assistant", "content": "here\n[attachment: a1, image/png]"},
            {"role": "user", "content": "thanks"},
        ],
    ),
]


@pytest.mark.parametrize(
    ("turns", "expected"), [c[1:] for c in ANTHROPIC_CASES], ids=[c[0] for c in ANTHROPIC_CASES]
)
def test_to_anthropic_messages(turns: list[ChatTurn], expected: list[dict[str, Any]]) -> None:
    assert to_anthropic_messages(turns) == expected


OPENAI_CASES: list[tuple[str, str, list[ChatTurn], list[dict[str, Any]]]] = [
    (
        "system first, then the turns",
        "Be brief.",
        [t(U, "a"), t(A, "b"), t(U, "c")],
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": "b"},
            {"role": "user", "content": "c"},
        ],
    ),
    (
        "no system message when the prompt is blank",
        " ",
        [t(U, "a")],
        [{"role": "user", "content": "a"}],
    ),
    (
        "image as image_url part",
        "",
        [t(U, "look", PNG)],
        [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "look"},
                    {"type": "image_url", "image_url": {"url": PNG.url}},
                ],
            }
        ],
    ),
    (
        "file note",
        "",
        [t(U, "", PDF)],
        [{"role": "user", "content": "[attachment: report.pdf, application/pdf, 2 KB]"}],
    ),
]


@pytest.mark.parametrize(
    ("system", "turns", "expected"), [c[1:] for c in OPENAI_CASES], ids=[c[0] for c in OPENAI_CASES]
)
def test_to_openai_messages(
    system: str, turns: list[ChatTurn], expected: list[dict[str, Any]]
) -> None:
    assert to_openai_messages(system, turns) == expected


@pytest.mark.parametrize(
    ("att", "note"),
    [
        (
            Attachment(id="x", url="u", mime_type="text/plain", size_bytes=10),
            "[attachment: x, text/plain, 10 B]",
        ),
        (
            Attachment(id="x", url="u", size_bytes=3 * 1024 * 1024, name="v.bin"),
            "[attachment: v.bin, application/octet-stream, 3.0 MB]",
        ),
        (Attachment(id="x", url="u", mime_type="audio/ogg"), "[attachment: x, audio/ogg]"),
    ],
)
def test_attachment_note(att: Attachment, note: str) -> None:
    assert attachment_note(att) == note


# --- SSE --------------------------------------------------------------------------------------

SSE_CASES: list[tuple[str, list[bytes], list[tuple[str, str]]]] = [
    ("named event", [b"event: ping\ndata: {}\n\n"], [("ping", "{}")]),
    ("default name", [b"data: x\n\n"], [("message", "x")]),
    ("split anywhere", [b"eve", b"nt: a\nda", b"ta: 1", b"\n", b"\n"], [("a", "1")]),
    ("crlf line ends", [b"data: 1\r\n\r\ndata: 2\r\n\r\n"], [("message", "1"), ("message", "2")]),
    ("cr split from lf across chunks", [b"data: 1\r", b"\n\r", b"\n"], [("message", "1")]),
    ("bare cr", [b"data: 1\r\r"], [("message", "1")]),
    ("comments ignored", [b": keep-alive\n\ndata: y\n\n"], [("message", "y")]),
    ("multi-line data joined", [b"data: a\ndata: b\n\n"], [("message", "a\nb")]),
    ("no space after colon", [b"data:z\n\n"], [("message", "z")]),
    ("event without data not dispatched", [b"event: x\n\ndata: d\n\n"], [("message", "d")]),
    (
        "utf-8 split inside a character",
        ["data: é€\n\n".encode()[:8], "data: é€\n\n".encode()[8:]],
        [("message", "é€")],
    ),
    ("unfinished event held back", [b"data: partial\n"], []),
]


@pytest.mark.parametrize(
    ("chunks", "expected"), [c[1:] for c in SSE_CASES], ids=[c[0] for c in SSE_CASES]
)
def test_sse_parser(chunks: list[bytes], expected: list[tuple[str, str]]) -> None:
    parser = SSEParser()
    events = [e for chunk in chunks for e in parser.feed(chunk)]
    assert [(e.event, e.data) for e in events] == expected


# --- HTTP status -> ProviderError -------------------------------------------------------------

STATUS_CASES: list[tuple[int, dict[str, str], bool, float | None, bool]] = [
    # status, headers, retryable, retry_after, auth
    (429, {"Retry-After": "7"}, True, 7.0, False),
    (429, {"retry-after-ms": "1500", "retry-after": "9"}, True, 1.5, False),
    (429, {}, True, None, False),
    (500, {}, True, None, False),
    (502, {"retry-after": "2"}, True, 2.0, False),
    (529, {}, True, None, False),
    (408, {}, True, None, False),
    (401, {"retry-after": "5"}, False, None, True),
    (403, {}, False, None, True),
    (400, {"retry-after": "5"}, False, None, False),
    (404, {}, False, None, False),
    (413, {}, False, None, False),
]


@pytest.mark.parametrize(("status", "headers", "retryable", "after", "auth"), STATUS_CASES)
def test_error_from_status(
    status: int, headers: dict[str, str], retryable: bool, after: float | None, auth: bool
) -> None:
    err = error_from_status("anthropic", status, headers, '{"error": {"message": "nope"}}')
    assert (err.retryable, err.retry_after, err.auth, err.status_code) == (
        retryable,
        after,
        auth,
        status,
    )
    assert err.provider == "anthropic"
    assert "nope" in err.message


def test_auth_error_says_configuration_and_never_the_key() -> None:
    body = '{"error": {"type": "authentication_error", "message": "invalid x-api-key"}}'
    err = error_from_status("openai", 401, {"authorization": "Bearer sk-secret"}, body)
    assert "configuration problem" in err.message
    assert "sk-secret" not in err.message


def test_retry_after_http_date() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after({"Retry-After": "Thu, 01 Jan 2026 12:00:30 GMT"}, now) == 30.0
    assert parse_retry_after({"Retry-After": "Thu, 01 Jan 2026 11:00:00 GMT"}, now) == 0.0
    assert parse_retry_after({"Retry-After": "soon"}, now) is None
    assert parse_retry_after({"Retry-After": "-3"}, now) == 0.0


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            '{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}',
            "Overloaded",
        ),
        ('{"error":{"message":"Rate limit reached","type":"requests"}}', "Rate limit reached"),
        ('{"error":"model not found"}', "model not found"),
        ("<html>\n  Bad   gateway</html>", "<html> Bad gateway</html>"),
        ("x" * 1000, "x" * 199 + "…"),
        (
            '{"error":{"message":"Incorrect API key provided: sk-proj-ab***wxyz. Find yours."}}',
            "Incorrect API key provided: [redacted]. Find yours.",
        ),
        ("", ""),
    ],
)
def test_vendor_message(body: str, expected: str) -> None:
    assert vendor_message(body) == expected


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        ({"type": "overloaded_error", "message": "Overloaded"}, True),
        ({"type": "api_error", "message": "x"}, True),
        ({"type": "invalid_request_error", "message": "bad"}, False),
        ("plain string", True),
        (None, True),
    ],
)
def test_error_from_stream(error: object, retryable: bool) -> None:
    err = error_from_stream("anthropic", error)
    assert err.retryable is retryable
    assert "mid-answer" in err.message


@pytest.mark.parametrize(
    ("exc", "words"),
    [
        (TimeoutError(), "in time"),
        (aiohttp.ServerTimeoutError("read"), "in time"),
        (aiohttp.ClientPayloadError("cut"), "closed the connection"),
        (aiohttp.ServerDisconnectedError(), "closed the connection"),
        (aiohttp.ClientConnectionError("refused"), "could not be reached"),
        (aiohttp.ClientResponseError(None, (), status=0), "HTTP level"),  # type: ignore[arg-type]
    ],
)
def test_error_from_exception_is_retryable(exc: BaseException, words: str) -> None:
    err = error_from_exception("openai", exc)
    assert err.retryable
    assert words in err.message


# --- wire answers -> text, finish reason, usage -----------------------------------------------


def test_anthropic_parse_message_keeps_only_text() -> None:
    data = {
        "content": [
            {"type": "thinking", "thinking": "hmm"},
            {"type": "text", "text": "Hi "},
            {"type": "tool_use", "id": "t", "name": "f", "input": {"a": 1}},
            {"type": "text", "text": "there"},
            {"type": "redacted_thinking", "data": "zz"},
            "junk",
        ],
        "stop_reason": "max_tokens",
        "usage": {"input_tokens": 3, "cache_read_input_tokens": 4, "output_tokens": 2},
    }
    text, finish, usage = anthropic.parse_message(data)
    assert (text, finish) == ("Hi there", "length")
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (7, 2, 9)


@pytest.mark.parametrize(
    ("stop", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("pause_turn", "pause_turn"),
        (None, "stop"),
    ],
)
def test_anthropic_finish_reason(stop: object, finish: str) -> None:
    assert anthropic.finish_reason(stop) == finish


def test_anthropic_stream_state_folds_events() -> None:
    state = anthropic.AnthropicStream()
    events = [
        (
            "message_start",
            '{"type":"message_start","message":{"usage":{"input_tokens":5,"output_tokens":1}}}',
        ),
        ("ping", '{"type": "ping"}'),
        (
            "content_block_delta",
            '{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"{}"}}',
        ),
        (
            "content_block_delta",
            '{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"Hi"}}',
        ),
        (
            "content_block_delta",
            '{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\\"a"}}',
        ),
        (
            "message_delta",
            '{"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":8}}',
        ),
    ]
    pieces = [state.feed(SSEEvent(name, data)) for name, data in events]
    assert pieces == ["", "", "", "Hi", "", ""]
    assert not state.done
    state.feed(SSEEvent("message_stop", '{"type":"message_stop"}'))
    assert state.done
    assert (state.text, state.prompt_tokens, state.completion_tokens) == ("Hi", 5, 8)
    assert anthropic.finish_reason(state.stop_reason) == "tool_calls"


def test_anthropic_stream_error_event_and_garbage_raise() -> None:
    state = anthropic.AnthropicStream()
    with pytest.raises(ProviderError, match="Overloaded") as info:
        state.feed(
            SSEEvent(
                "error",
                '{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}',
            )
        )
    assert info.value.retryable
    with pytest.raises(ProviderError, match="unreadable"):
        state.feed(SSEEvent("content_block_delta", "{not json"))


def test_openai_parse_completion_ignores_tool_calls_and_refusals() -> None:
    data = {
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "refusal": None,
                    "tool_calls": [{"id": "c", "type": "function"}],
                },
                "finish_reason": "tool_calls",
            },
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }
    assert openai.parse_completion(data) == ("", "tool_calls", openai.make_usage(data["usage"]))
    parts = {
        "choices": [
            {
                "index": 0,
                "message": {
                    "content": [
                        {"type": "text", "text": "a"},
                        {"type": "refusal", "refusal": "no"},
                        {"type": "text", "text": "b"},
                    ]
                },
            }
        ]
    }
    text, finish, usage = openai.parse_completion(parts)
    assert (text, finish, usage.total_tokens) == ("ab", "stop", 0)
    assert openai.parse_completion({}) == ("", "stop", openai.make_usage(None))


def test_openai_stream_state_folds_chunks() -> None:
    state = openai.OpenAIStream()
    chunks = [
        '{"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}],"usage":null}',
        '{"choices":[{"index":0,"delta":{"reasoning_content":"{\\"x\\":1}"},"finish_reason":null}]}',
        '{"choices":[{"index":0,"delta":{"content":null,"tool_calls":[{"index":0}]},"finish_reason":null}]}',
        '{"choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}]}',
        '{"choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":null}]}',
    ]
    assert [state.feed(SSEEvent("message", c)) for c in chunks] == ["", "", "", "Hel", "lo"]
    assert not state.complete
    state.feed(SSEEvent("message", '{"choices":[{"index":0,"delta":{},"finish_reason":"length"}]}'))
    assert state.complete
    assert not state.done
    state.feed(
        SSEEvent(
            "message",
            '{"choices":[],"usage":{"prompt_tokens":2,"completion_tokens":3,"total_tokens":5}}',
        )
    )
    state.feed(SSEEvent("message", "[DONE]"))
    assert state.done
    assert (state.text, state.finish, state.usage.total_tokens) == ("Hello", "length", 5)


def test_openai_stream_error_chunk_raises() -> None:
    with pytest.raises(ProviderError) as info:
        openai.OpenAIStream().feed(
            SSEEvent("message", '{"error":{"message":"bad input","type":"invalid_request_error"}}')
        )
    assert not info.value.retryable
    assert "bad input" in info.value.message


# --- provider "auto" (SPEC §4.3) ----------------------------------------------------------------


class FakeProbe:
    def __init__(self, answers: bool) -> None:
        self.answers = answers
        self.urls: list[str] = []

    async def __call__(self, url: str) -> bool:
        self.urls.append(url)
        return self.answers


AUTO_CASES: list[tuple[str, dict[str, str], bool, str, str, str]] = [
    # id, env, local server answers, provider, key, words in the reason
    (
        "seed anthropic name",
        {"OPENCLAW_ANTHROPIC_API_KEY": "sk-a1", "OPENAI_API_KEY": "sk-o"},
        True,
        "anthropic",
        "sk-a1",
        "key from OPENCLAW_ANTHROPIC_API_KEY",
    ),
    (
        "vendor anthropic name",
        {"ANTHROPIC_API_KEY": "sk-a2"},
        False,
        "anthropic",
        "sk-a2",
        "key from ANTHROPIC_API_KEY",
    ),
    (
        "seed name wins over vendor name",
        {"ANTHROPIC_API_KEY": "sk-v", "OPENCLAW_ANTHROPIC_API_KEY": "sk-s"},
        False,
        "anthropic",
        "sk-s",
        "OPENCLAW_ANTHROPIC_API_KEY",
    ),
    (
        "openai when no anthropic key",
        {"OPENAI_API_KEY": "sk-o1", "ANTHROPIC_API_KEY": ""},
        True,
        "openai",
        "sk-o1",
        "key from OPENAI_API_KEY",
    ),
    ("ollama when no key", {}, True, "openai", "", "answers at http://127.0.0.1:11434/v1"),
    ("echo when nothing", {}, False, "echo", "", "labelled echo"),
]


@pytest.mark.parametrize(
    ("env", "local", "name", "key", "words"),
    [c[1:] for c in AUTO_CASES],
    ids=[c[0] for c in AUTO_CASES],
)
async def test_auto_choice(
    env: dict[str, str], local: bool, name: str, key: str, words: str
) -> None:
    probe = FakeProbe(local)
    choice = await choose_provider(AgentConfig(), probe, env)
    assert (choice.name, choice.api_key) == (name, key)
    assert words in choice.reason
    assert "auto" in choice.reason
    if key:
        assert key not in choice.reason
        assert key not in repr(choice)
        assert probe.urls == []  # a key decides without touching the network
    else:
        assert probe.urls == ["http://127.0.0.1:11434/v1"]


async def test_local_server_choice_points_at_it_without_a_key() -> None:
    choice = await choose_provider(AgentConfig(), FakeProbe(True), {})
    assert (choice.base_url, choice.model) == ("http://127.0.0.1:11434/v1", "llama3.2")
    assert (await choose_provider(AgentConfig(model="qwen3"), FakeProbe(True), {})).model == "qwen3"


async def test_explicit_provider_without_key_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="OPENCLAW_OPENAI_API_KEY or OPENAI_API_KEY"):
        await choose_provider(AgentConfig(provider="openai"), FakeProbe(True), {})
    keyless = await choose_provider(
        AgentConfig(provider="openai", base_url="http://127.0.0.1:8000/v1/"), FakeProbe(True), {}
    )
    assert (keyless.base_url, keyless.api_key) == ("http://127.0.0.1:8000/v1", "")
    assert "no key" in keyless.reason


async def test_explicit_provider_uses_named_key_env() -> None:
    config = AgentConfig(provider="anthropic", api_key_env="MY_KEY", model="claude-x")
    choice = await choose_provider(
        config, FakeProbe(False), {"MY_KEY": "k", "ANTHROPIC_API_KEY": "no"}
    )
    assert (choice.api_key, choice.model, choice.base_url) == (
        "k",
        "claude-x",
        "https://api.anthropic.com",
    )
    assert choice.reason == "agent.provider = 'anthropic', key from MY_KEY"
