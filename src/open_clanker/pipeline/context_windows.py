"""What each provider's context window holds, as its overflow errors said (in this process).

A vendor that names its limit ("prompt is too long: 9000 tokens > 8192 maximum") caps the
history budget for that provider from then on, so a `history_tokens` larger than the model's
window costs one refused request per process, not one per turn. Not stored: a restarted or
other replica learns it again from its own first refusal.
"""

from __future__ import annotations

from open_clanker.core.errors import ContextOverflow
from open_clanker.pipeline.history import OVERFLOW_MARGIN


class ContextWindows:
    def __init__(self) -> None:
        self._limits: dict[str, int] = {}  # provider name -> tokens its prompt may use

    def learn(self, provider: str, overflow: ContextOverflow) -> None:
        if overflow.limit:
            self._limits[provider] = min(self._limits.get(provider, overflow.limit), overflow.limit)

    def budget(self, provider: str, configured: int) -> int:
        """The history budget for `provider`: the configured one, under what it said it holds."""
        limit = self._limits.get(provider)
        return configured if limit is None else min(configured, int(limit * OVERFLOW_MARGIN))
