"""The context sent to the model, bounded by messages and by estimated tokens (SPEC §4.1, §8).

Pure functions. Tokens are estimated without a tokenizer: characters / 4, a fixed cost per image
and a few tokens per message for the vendor's framing, the system prompt included. Once the
provider has answered in this session, the estimate is scaled by how it counted the last
request: its `usage.prompt_tokens` against our estimate of that same request, both stored with
the reply (`response_json`, `context_json`), so every replica and every restart reads the same
ratio. The budget is then in the provider's own tokens.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from open_clanker.core.errors import ContextOverflow
from open_clanker.core.types import Message, MessageMetadata, Role

CHARS_PER_TOKEN = 4
# One image, as the vendors count one at the size they scale it to (Anthropic: about
# width × height / 750, so ~1,600 at 1.15 megapixels; OpenAI: 765–1,105 at high detail).
IMAGE_TOKENS = 1_600
MESSAGE_TOKENS = 4  # a message's role and separators in the vendor's prompt format
# Below this our estimate is mostly fixed overhead, so the provider's count says little.
MIN_MEASURED_TOKENS = 256
RATIO_BOUNDS = (0.25, 4.0)
# A retry after an overflow aims this far under the limit the vendor named.
OVERFLOW_MARGIN = 0.9


@dataclass(frozen=True, slots=True)
class Measured:
    """One earlier request as the provider counted it and as we estimated it."""

    prompt_tokens: int
    sent_tokens: int


@dataclass(frozen=True, slots=True)
class Context:
    """What is sent: messages oldest first, a user turn first, roles alternating, the newest
    message last; `estimate` is ours (system prompt included), `tokens` the provider's."""

    messages: list[Message]
    estimate: int
    ratio: float
    dropped: int  # of the messages offered, how many the budgets left out

    @property
    def tokens(self) -> int:
        return math.ceil(self.estimate * self.ratio)


def estimate_text(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def estimate_message(message: Message) -> int:
    cost = MESSAGE_TOKENS + estimate_text(message.text)
    for att in message.metadata.attachments:
        if att.mime_type.lower().startswith("image/"):
            cost += IMAGE_TOKENS
        else:  # sent as a one-line note naming the file (agent/mapping.py)
            cost += estimate_text(f"[attachment: {att.name or att.id}, {att.mime_type}, 0 KB]")
    return cost


def estimate_system(system_prompt: str) -> int:
    return MESSAGE_TOKENS + estimate_text(system_prompt) if system_prompt.strip() else 0


def estimate_request(system_prompt: str, messages: Sequence[Message]) -> int:
    return estimate_system(system_prompt) + sum(estimate_message(m) for m in messages)


def correction(measured: Measured | None) -> float:
    """Provider tokens per estimated token, from the last request it answered (1 if none)."""
    if measured is None or measured.sent_tokens < MIN_MEASURED_TOKENS:
        return 1.0
    if measured.prompt_tokens <= 0:
        return 1.0
    low, high = RATIO_BOUNDS
    return min(max(measured.prompt_tokens / measured.sent_tokens, low), high)


def fit_history(
    messages: Sequence[Message],
    system_prompt: str,
    max_messages: int,
    max_tokens: int,
    measured: Measured | None = None,
) -> Context:
    """The newest messages that fit both budgets, oldest dropped first; never the newest
    message, even alone over the budget. `messages` are oldest first, the newest last."""
    ratio = correction(measured)
    window = list(messages[-max_messages:]) if max_messages > 0 else list(messages[-1:])
    room = max_tokens / ratio - estimate_system(system_prompt)
    used = 0
    start = len(window)
    for k in range(len(window) - 1, -1, -1):
        cost = estimate_message(window[k])
        if start < len(window) and used + cost > room:
            break
        used += cost
        start = k
    span = window[start:]
    kept = alternate(span)
    dropped = len(messages) - len(span)
    if len(kept) == len(span) and all(a is b for a, b in zip(kept, span, strict=True)):
        # Nothing merged or left out: the sum just taken is the request's (no second pass).
        return Context(kept, estimate_system(system_prompt) + used, ratio, dropped)
    return Context(kept, estimate_request(system_prompt, kept), ratio, dropped)


def alternate(messages: Sequence[Message]) -> list[Message]:
    """User and assistant turns alternating, a user turn first: empty messages dropped,
    assistant turns before the first user turn dropped, neighbours of one role merged into
    the later one (a blank line between their texts), so the newest message stays last
    (it is kept as it is, even empty)."""
    out: list[Message] = []
    for n, message in enumerate(messages):
        newest = n == len(messages) - 1  # what is being answered: kept, whatever it holds
        if not newest and not message.text.strip() and not message.metadata.attachments:
            continue
        if not out and message.role is not Role.USER and not newest:
            continue
        if out and out[-1].role is message.role:
            out[-1] = _merged(out[-1], message)
        else:
            out.append(message)
    return out


def _merged(earlier: Message, later: Message) -> Message:
    text = "\n\n".join(t for t in (earlier.text, later.text) if t.strip())
    attachments = earlier.metadata.attachments + later.metadata.attachments
    metadata = MessageMetadata(
        attachments=attachments,
        reply_to=later.metadata.reply_to,
        mentions=later.metadata.mentions,
    )
    return later.model_copy(update={"text": text, "metadata": metadata})


def overflow_target(sent_estimate: int, overflow: ContextOverflow) -> int:
    """Our estimate to aim the retry at: the part of what was sent that fits the limit the
    vendor named (with a margin), else half of what was sent."""
    prompt, limit = overflow.prompt_tokens, overflow.limit
    if prompt and limit and prompt > limit:
        return math.floor(sent_estimate * limit / prompt * OVERFLOW_MARGIN)
    return sent_estimate // 2
