"""A bounded fuzz run, in every `make test`: WebSocket frame parsing and Telegram update parsing
meet generated hostile input and fail only with the named errors their callers handle.

Hypothesis, derandomized with a fixed number of examples per property, so every run is the same
run and takes the same few seconds; a failure prints the shrunk input that caused it.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from telegram import Update

from open_clanker.channels.telegram.updates import BotIdentity, ignored_reason, inbound_from_update
from open_clanker.core.errors import InputError
from open_clanker.core.text import NUL
from open_clanker.gateway.ws_frames import (
    MAX_ID_CHARS,
    AuthFrame,
    ChatFrame,
    frame_id,
    parse_frame,
)

BUDGET = settings(
    max_examples=300,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)

# What handle_webhook turns into a 400 when the update itself cannot be read.
UPDATE_READ_ERRORS = (ValueError, TypeError, KeyError, AttributeError, RecursionError)

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
frame_types = st.sampled_from(["auth", "chat", "subscribe", "ping", "stop", "", "Chat", None, 1])


@st.composite
def frame_objects(draw: st.DrawFn) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": draw(frame_types)}
    for key in draw(st.sets(st.sampled_from(["id", "text", "session", "token", "extra"]))):
        frame[key] = draw(json_values | st.text(min_size=1, max_size=50))
    return frame


raw_frames = (
    st.binary(max_size=200)
    | st.text(max_size=200)
    | json_values.map(json.dumps)
    | frame_objects().map(json.dumps)
    | frame_objects().map(lambda f: json.dumps(f).encode())
    | st.integers(1, 3000).map(lambda n: "[" * n + "]" * n)  # deep nesting
    | st.integers(1, 3000).map(lambda n: '{"a":' * n + "1" + "}" * n)
)


@BUDGET
@given(raw=raw_frames)
def test_frame_parsing_fails_only_with_named_input_errors(raw: str | bytes) -> None:
    frame, error = _parsed(raw)
    if error is not None:
        assert error.code in ("invalid_json", "invalid_input")
        assert error.message
    else:
        assert frame is not None
        assert frame.type in ("auth", "chat", "subscribe", "ping", "stop")
        if isinstance(frame, ChatFrame):
            assert frame.text and NUL not in frame.text
        if isinstance(frame, AuthFrame):
            assert isinstance(frame.token, str)
    found = frame_id(raw)
    assert found is None or (isinstance(found, str) and len(found) <= MAX_ID_CHARS)


def _parsed(raw: str | bytes) -> tuple[Any, InputError | None]:
    """(frame, None) or (None, the named error); anything else raised fails the test."""
    try:
        return parse_frame(raw), None
    except InputError as exc:
        return None, exc


@BUDGET
@given(text=st.text(min_size=1, max_size=100), frame_no=st.text(min_size=1, max_size=20))
def test_every_well_formed_chat_frame_parses(text: str, frame_no: str) -> None:
    raw = json.dumps({"type": "chat", "id": frame_no, "text": text})
    frame, error = _parsed(raw)
    if text.replace(NUL, ""):
        assert isinstance(frame, ChatFrame) and frame.text == text.replace(NUL, "")
        assert frame_id(raw) == frame_no
    else:  # only NULs: nothing is left to say
        assert error is not None and error.code == "invalid_input"


# --- Telegram updates ------------------------------------------------------------------------
# Two kinds: plausible updates (the right shapes, edge values: they reach the mapping) and
# hostile ones (anything at all in any field: Telegram is trusted, a forged webhook is not).


def update_strategy(noise: bool) -> st.SearchStrategy[dict[str, Any]]:
    def field(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        return good | json_values if noise else good

    ids = field(st.integers(-(2**53), 2**53))
    user = field(
        st.fixed_dictionaries(
            {"id": ids, "is_bot": field(st.booleans()), "first_name": st.text(max_size=10)},
            optional={"username": field(st.text(max_size=12))},
        )
    )
    entity = st.fixed_dictionaries(
        {
            "type": field(
                st.sampled_from(
                    ["mention", "bot_command", "text_mention", "url", "bold", "mystery"]
                )
            ),
            "offset": field(st.integers(-5, 120)),
            "length": field(st.integers(-5, 120)),
        },
        optional={"user": user},
    )
    entities = field(st.lists(entity, max_size=4))
    chat = field(
        st.fixed_dictionaries(
            {"id": ids, "type": field(st.sampled_from(["private", "group", "supergroup", "x"]))}
        )
    )
    photo = st.fixed_dictionaries(
        {
            "file_id": st.text(max_size=8),
            "file_unique_id": st.text(max_size=8),
            "width": field(st.integers(-1, 5000)),
            "height": field(st.integers(-1, 5000)),
        },
        optional={"file_size": field(st.integers(-1, 10**9))},
    )
    document = st.fixed_dictionaries(
        {"file_id": st.text(max_size=8), "file_unique_id": st.text(max_size=8)},
        optional={"mime_type": field(st.text(max_size=20)), "file_size": field(st.integers())},
    )

    def message(depth: int) -> st.SearchStrategy[Any]:
        optional: dict[str, st.SearchStrategy[Any]] = {
            "caption": field(st.text(max_size=40)),
            "entities": entities,
            "caption_entities": entities,
            "message_thread_id": ids,
            "is_topic_message": field(st.booleans()),
            "photo": field(st.lists(photo, max_size=3)),
            "document": field(document),
        }
        if depth < 2:
            optional["reply_to_message"] = message(depth + 1)
        return field(
            st.fixed_dictionaries(
                {
                    "message_id": ids,
                    "date": field(st.integers(0, 2**31)),
                    "chat": chat,
                    "from": user,
                    "text": field(st.text(max_size=80)),
                },
                optional=optional,
            )
        )

    return st.fixed_dictionaries(
        {"update_id": ids},
        optional={"message": message(0), "edited_message": message(0)},
    )


bots = st.builds(BotIdentity, st.none() | st.integers(1, 10**12), st.none() | st.text(max_size=12))


DATELESS = {  # found by this fuzz: a message without a date made the mapping raise
    "update_id": 1,
    "message": {
        "message_id": 1,
        "date": None,
        "chat": {"id": 1, "type": "private"},
        "from": {"id": 2, "is_bot": False, "first_name": "a"},
        "text": "hi",
    },
}


@BUDGET
@given(data=update_strategy(noise=False) | update_strategy(noise=True), bot=bots)
@example(data=DATELESS, bot=BotIdentity(None, None))
def test_update_parsing_fails_only_as_the_webhook_expects(
    data: dict[str, Any], bot: BotIdentity
) -> None:
    # The same steps as the adapter: de_json (a refusal there is a 400), then the pure mapping,
    # which must never raise for any update de_json accepted.
    try:
        update = Update.de_json(json.loads(json.dumps(data)), None)
    except UPDATE_READ_ERRORS:
        return
    reason = ignored_reason(update)
    inbound = None if reason is not None else inbound_from_update(update, bot)
    if inbound is not None:
        msg = inbound.message
        assert msg.channel_type.value == "telegram"
        assert NUL not in msg.text
        assert msg.session.startswith("telegram:")
        assert inbound.platform_id is not None and inbound.platform_id.startswith(msg.channel_id)
        REACHED.append(inbound)


REACHED: list[Any] = []  # updates that became messages: the fuzz got past de_json


def test_the_update_fuzz_reached_the_mapping() -> None:
    # Runs after the property above (file order): some generated updates were real messages.
    assert REACHED
