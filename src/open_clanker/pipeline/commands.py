"""Slash commands handled without the model: parsing is pure, answers are plain text."""

from __future__ import annotations

import enum


class Command(enum.StrEnum):
    HELP = "help"
    NEW = "new"
    STATUS = "status"
    START = "start"
    STOP = "stop"


_ALIASES = {"reset": Command.NEW}

HELP_TEXT = (
    "I am an AI assistant. Just write to me.\n"
    "/new - start a fresh conversation (alias /reset)\n"
    "/stop - stop the answer being written\n"
    "/status - show the model and this conversation's state\n"
    "/help - show this help"
)

START_TEXT = "Hello! I am an AI assistant; just write to me.\n\n" + HELP_TEXT

STOPPED_TEXT = "Stopped. The answer so far is kept."
NOTHING_TO_STOP_TEXT = "Nothing is being answered right now, so there was nothing to stop."

NEW_TEXT = "Started a new conversation. Earlier messages will not be used as context."


def parse_command(text: str, bot_username: str | None = None) -> Command | None:
    """`/new`, `/reset@MyBot`, `/help extra words` -> the command; anything else -> None.

    A command addressed to another bot (`/help@OtherBot`) is not ours.
    """
    stripped = text.strip()
    if not stripped.startswith("/") or len(stripped) < 2:
        return None
    word = stripped[1:].split(maxsplit=1)[0]
    name, _, target = word.partition("@")
    if target and bot_username and target.lower() != bot_username.lower():
        return None
    name = name.lower()
    if name in _ALIASES:
        return _ALIASES[name]
    try:
        return Command(name)
    except ValueError:
        return None
