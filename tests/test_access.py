"""Who may talk (SPEC §4.4): `decide_access` as a table."""

from __future__ import annotations

import pytest

from open_clanker.core.types import ChannelType
from open_clanker.pipeline.access import Access, AccessFacts, decide_access

TG, DC, API = ChannelType.TELEGRAM, ChannelType.DISCORD, ChannelType.API
ALLOW, IGNORE, PAIR = Access.ALLOW, Access.IGNORE, Access.PAIR

DIRECT, GROUP = True, False
ADDRESSED, NOT_ADDRESSED = True, False
SENDER_OK, SENDER_UNKNOWN = True, False
CHAT_OK, CHAT_UNKNOWN = True, False


@pytest.mark.parametrize(
    ("policy", "channel", "direct", "addressed", "sender", "chat", "expected"),
    [
        # Direct chats: the sender (or the chat, which is the sender's) decides.
        ("pairing", TG, DIRECT, ADDRESSED, SENDER_OK, CHAT_UNKNOWN, ALLOW),
        ("pairing", TG, DIRECT, ADDRESSED, SENDER_UNKNOWN, CHAT_OK, ALLOW),
        ("pairing", TG, DIRECT, ADDRESSED, SENDER_UNKNOWN, CHAT_UNKNOWN, PAIR),
        ("allowlist", DC, DIRECT, ADDRESSED, SENDER_UNKNOWN, CHAT_UNKNOWN, IGNORE),
        ("allowlist", DC, DIRECT, ADDRESSED, SENDER_OK, CHAT_UNKNOWN, ALLOW),
        ("open", TG, DIRECT, ADDRESSED, SENDER_UNKNOWN, CHAT_UNKNOWN, ALLOW),
        # Groups: addressed, and the chat itself allowed.
        ("pairing", TG, GROUP, ADDRESSED, SENDER_UNKNOWN, CHAT_OK, ALLOW),
        ("allowlist", DC, GROUP, ADDRESSED, SENDER_UNKNOWN, CHAT_OK, ALLOW),
        ("pairing", TG, GROUP, NOT_ADDRESSED, SENDER_OK, CHAT_OK, IGNORE),
        # An allowed (or paired) sender alone does not open a group that is not allowed.
        ("pairing", TG, GROUP, ADDRESSED, SENDER_OK, CHAT_UNKNOWN, IGNORE),
        ("allowlist", DC, GROUP, ADDRESSED, SENDER_OK, CHAT_UNKNOWN, IGNORE),
        # Strangers in groups never get a pairing code: the group is ignored.
        ("pairing", DC, GROUP, ADDRESSED, SENDER_UNKNOWN, CHAT_UNKNOWN, IGNORE),
        # `open`: any group, still only when addressed.
        ("open", TG, GROUP, ADDRESSED, SENDER_UNKNOWN, CHAT_UNKNOWN, ALLOW),
        ("open", DC, GROUP, NOT_ADDRESSED, SENDER_UNKNOWN, CHAT_UNKNOWN, IGNORE),
        # Token channels (API, web chat, CLI) are governed by the gateway's bearer token.
        ("allowlist", API, DIRECT, ADDRESSED, SENDER_UNKNOWN, CHAT_UNKNOWN, ALLOW),
    ],
)
def test_decide_access(
    policy: str,
    channel: ChannelType,
    direct: bool,
    addressed: bool,
    sender: bool,
    chat: bool,
    expected: Access,
) -> None:
    facts = AccessFacts(channel, direct, addressed, sender_allowed=sender, chat_allowed=chat)
    assert decide_access(policy, facts) is expected
