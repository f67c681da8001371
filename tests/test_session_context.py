"""The session's context through the real pipeline: budgets named by /status, an unanswered
question kept in order, and the token correction read back from storage after a restart."""

from __future__ import annotations

import math
from pathlib import Path

from open_clanker.agent.base import ProviderRequest
from open_clanker.config.model import Config
from open_clanker.core.errors import ProviderError
from open_clanker.core.types import (
    AgentResponse,
    ChannelType,
    Message,
    Role,
    SessionKey,
    Usage,
)
from open_clanker.pipeline import Ending
from open_clanker.pipeline.history import estimate_request
from open_clanker.storage.reply_usage import ReplyUsage
from tests.pipeline_kit import ScriptedProvider, make_kit, tg_inbound

CONFIG = Config.model_validate(
    {
        "access": {"dm_policy": "open"},
        "agent": {"history_messages": 100, "history_tokens": 2000, "system_prompt": "Be kind."},
    }
)


class CountingProvider(ScriptedProvider):
    """Reports a prompt twice as long as the gateway's estimate, as a tokenizer might."""

    async def complete(self, request: ProviderRequest) -> AgentResponse:
        answer = await super().complete(request)
        chars = len(request.system_prompt) + sum(len(t.text) for t in request.turns)
        prompt = 2 * math.ceil(chars / 4) + 8 * (len(request.turns) + 1)
        return answer.model_copy(update={"usage": Usage(prompt_tokens=prompt, total_tokens=prompt)})


def text(i: int) -> str:
    return f"message {i} ".ljust(800, "m")  # 200 + 4 estimated tokens


async def test_status_names_both_budgets(tmp_path: Path) -> None:
    kit = await make_kit(tmp_path, CONFIG)
    try:
        turn = await kit.pipeline.handle(tg_inbound("/status"))
    finally:
        await kit.store.close()
    assert turn.ending is Ending.COMMAND
    assert turn.notice is not None
    assert "newest 100 of them" in turn.notice and "2,000 tokens" in turn.notice


async def test_an_unanswered_question_joins_the_next_one(tmp_path: Path) -> None:
    kit = await make_kit(tmp_path, CONFIG)
    try:
        await kit.pipeline.handle(tg_inbound("first", message_id=1))
        kit.provider.failures.append(ProviderError("down", "scripted", retryable=True))
        failed = await kit.pipeline.handle(tg_inbound("are you there?", message_id=2))
        assert failed.ending is Ending.FAILED
        await kit.pipeline.handle(tg_inbound("hello again", message_id=3))
    finally:
        await kit.store.close()
    turns = kit.provider.requests[-1].turns
    assert [(t.role, t.text) for t in turns] == [
        (Role.USER, "first"),
        (Role.ASSISTANT, "reply to: first"),
        (Role.USER, "are you there?\n\nhello again"),
    ]


async def test_the_correction_is_read_back_from_storage_after_a_restart(tmp_path: Path) -> None:
    kit = await make_kit(tmp_path, CONFIG, CountingProvider())
    try:
        for i in range(6):
            turn = await kit.pipeline.handle(tg_inbound(text(i), message_id=i))
        assert turn.reply is not None
        stored = await ReplyUsage(kit.store.db).latest_measured([turn.reply.id])
    finally:
        await kit.store.close()
    assert stored is not None
    prompt, sent = stored
    assert sent == estimated(kit.provider.requests[-1])
    assert 1.9 < prompt / sent < 2.1

    # A new process on the same database: the first turn already uses the stored ratio.
    after = CountingProvider()
    restarted = await make_kit(tmp_path, CONFIG, after)
    try:
        await restarted.pipeline.handle(tg_inbound(text(6), message_id=6))
    finally:
        await restarted.store.close()
    users = [t for t in after.requests[-1].turns if t.role is Role.USER]
    # 2,000 provider tokens hold 2 of these questions; uncorrected they would hold 5.
    assert len(users) == 2
    assert users[-1].text == text(6)
    assert estimated(after.requests[-1]) * 2 <= 2000


def estimated(request: ProviderRequest) -> int:
    """`estimate_request` of what the provider got (turns rebuilt as messages)."""
    sent = [
        Message(
            channel_type=ChannelType.TELEGRAM,
            channel_id="100",
            sender="x",
            role=t.role,
            text=t.text,
            session=SessionKey("telegram:100"),
        )
        for t in request.turns
    ]
    return estimate_request(request.system_prompt, sent)
