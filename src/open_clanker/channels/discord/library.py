"""discord.py, imported once without its import-time noise.

discord.py 2.7 imports `audioop` for voice, which Python 3.11+ flags as deprecated; voice is
never used here, so that one warning is silenced (and kept out of strict test runs).
"""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "'audioop' is deprecated", DeprecationWarning)
    import discord
    from discord.gateway import DiscordWebSocket
    from discord.http import Route
    from discord.voice_client import VoiceClient

__all__ = ["DiscordWebSocket", "Route", "VoiceClient", "discord"]
