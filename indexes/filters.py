"""Which messages the store keeps: the import filters, configurable in settings (`app/storage.py` makes them).

Defaults are what server admins expect: no bots (this one included), no bot commands, no system
messages (joins, pins, boosts), no empty, attachment-only or link-only messages, and never the
messages of members who opted out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from indexes.records import StoredMessage

SYSTEM_TYPES = {
    "GuildMemberJoin",
    "ChannelPinnedMessage",
    "ThreadCreated",
    "RecipientAdd",
    "RecipientRemove",
    "Call",
    "ChannelNameChange",
    "ChannelIconChange",
    "GuildBoost",
    "GuildBoostTier1",
    "GuildBoostTier2",
    "GuildBoostTier3",
    "ChannelFollowAdd",
    "ThreadStarterMessage",
    "System",
    "AutoModerationAction",
    "GuildDiscoveryDisqualified",
    "GuildDiscoveryRequalified",
}
# Discord's numeric system types (joins 7, pins 6, boosts 8-11, thread created 18, ...).
SYSTEM_TYPE_NUMBERS = {str(n) for n in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 15, 16, 17, 18, 21, 24)}
LINK_ONLY = re.compile(r"^\s*(<?https?://\S+>?\s*)+$")


@dataclass(frozen=True)
class Filters:
    """What to leave out of the store; `reason(message)` says why a message is left out."""

    skip_bots: bool = True
    skip_commands: bool = True
    command_prefixes: tuple[str, ...] = ("!", "/", "?", "$", ".", ";;")
    skip_system: bool = True
    skip_link_only: bool = True
    max_chars: int = 4000
    opted_out: frozenset[int] = field(default_factory=frozenset)

    def is_command(self, text: str) -> bool:
        """A bot command: a prefix directly followed by a command name ("!play", "/roll 2d6")."""
        for prefix in self.command_prefixes:
            if text.startswith(prefix) and text[len(prefix) : len(prefix) + 1].isalpha():
                return True
        return False

    def reason(self, message: StoredMessage) -> str | None:
        """Why a message is left out of the store, or None to keep it."""
        if message.author_id in self.opted_out:
            return "opted_out"
        if self.skip_system and (message.type in SYSTEM_TYPES or message.type in SYSTEM_TYPE_NUMBERS):
            return "system"
        if self.skip_bots and message.author_is_bot:
            return "bot"
        text = message.content.strip()
        if not text:
            return "attachment_only" if message.attachments else "empty"
        if self.skip_link_only and LINK_ONLY.match(text):
            return "link_only"
        if self.skip_commands and self.is_command(text):
            return "command"
        return None
