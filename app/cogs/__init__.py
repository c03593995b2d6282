"""The bot's Discord layer, one cog per concern: replies, ingestion, admin commands.

Cogs reach the runtime, the settings and the counters through the bot they are added to
(`bot.runtime`, `bot.settings`, `bot.stats`), typed as `app.bot.CharacterBot`; they import it for
type checking only: the bot imports them, not the other way round.
"""

from __future__ import annotations

import discord


def in_scope(message: discord.Message, settings) -> bool:
    """The character's channel, its threads (REPLY_IN_THREADS) and direct messages (ALLOW_DMS)."""
    channel = message.channel
    if isinstance(channel, discord.DMChannel):
        return settings.ALLOW_DMS
    if channel.id == settings.DISCORD_CHANNEL_ID:
        return True
    return (
        settings.REPLY_IN_THREADS
        and isinstance(channel, discord.Thread)
        and channel.parent_id == settings.DISCORD_CHANNEL_ID
    )
