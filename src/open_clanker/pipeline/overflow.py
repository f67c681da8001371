"""A model call that survives a "context too long" refusal: trim harder, ask once more (§8).

The chain hands a context overflow straight back (agent/chain.py): the same request would be
refused again. Here the history is cut to what the vendor said fits (with a margin), or to
half of what was sent when it named no numbers, and asked once more. A second refusal, or a
history that cannot be cut (the newest message alone), goes to the user as a reply naming
`/new` (ModelCall).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog

from open_clanker.core.errors import ProviderError
from open_clanker.core.types import AgentResponse, Message
from open_clanker.pipeline.context_windows import ContextWindows
from open_clanker.pipeline.history import estimate_request, fit_history, overflow_target

log = structlog.get_logger("open_clanker.pipeline")

OVERFLOW_TEXT = (
    "This conversation no longer fits in what the AI model can read, even with older "
    "messages left out. Send /new to start a fresh conversation (or send a shorter message)."
)

Ask = Callable[[list[Message]], Awaitable[AgentResponse]]


async def ask_within_context(
    history: list[Message],
    system_prompt: str,
    ask: Ask,
    windows: ContextWindows,
    sent: Callable[[int], None],
) -> AgentResponse:
    """`ask(history)`, and after an overflow `ask(shorter history)` once. `sent` is told our
    estimate of each request just before it goes out (the reply stores the last one)."""
    estimate = estimate_request(system_prompt, history)
    sent(estimate)
    try:
        return await ask(history)
    except ProviderError as exc:
        overflow = exc.context_overflow
        if overflow is None:
            raise
        windows.learn(exc.provider, overflow)
        target = overflow_target(estimate, overflow)
        shorter = fit_history(history, system_prompt, len(history), target).messages
        log.warning(
            "context_overflow",
            provider=exc.provider,
            sent_tokens=estimate,
            target_tokens=target,
            vendor_prompt_tokens=overflow.prompt_tokens,
            vendor_limit=overflow.limit,
            messages=len(history),
            retry_messages=len(shorter) if len(shorter) < len(history) else None,
        )
        if len(shorter) >= len(history):
            raise  # only the newest message is left: nothing more to leave out
    sent(estimate_request(system_prompt, shorter))
    return await ask(shorter)
