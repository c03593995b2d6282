"""The message record shared by the store, the importers and the index."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timezone

DISCORD_EPOCH_MS = 1_420_070_400_000  # 2015-01-01, where Discord's snowflake ids count from
MAX_ID = 2**63 - 1  # SQLite's integers


def content_digest(text: str) -> str:
    """What the index and the adapters record of a message's words to tell a change: a short hash, never the text."""
    return hashlib.blake2b(text.encode("utf-8", "replace"), digest_size=8).hexdigest()


def snowflake_at(moment: datetime) -> int:
    """The smallest snowflake id of a message posted at `moment` (ids are time-ordered)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return max(0, int(moment.timestamp() * 1000) - DISCORD_EPOCH_MS) << 22


@dataclass
class StoredMessage:
    """One channel message as the store keeps it."""

    id: int
    channel_id: int
    author_id: int
    author_name: str
    timestamp: datetime
    content: str
    author_display: str = ""
    author_is_bot: bool = False
    guild_id: int | None = None
    type: str = "Default"
    edited_at: datetime | None = None
    reply_to: int | None = None
    is_pinned: bool = False
    reactions: dict[str, int] = field(default_factory=dict)
    mentions: list[int] = field(default_factory=list)
    attachments: list[str] = field(default_factory=list)
    lore_score: float = 0.0
    lore_reasons: list[str] = field(default_factory=list)
    discord_id: bool = False  # the id is Discord's own (live, backfill, JSON/HTML), not derived from a date
    private: bool = False  # posted in a private thread: seen only there, never in the public channel
    licensed: bool = False  # from an export the admin declared they may use for training (--licensed)

    @property
    def reaction_count(self) -> int:
        return sum(self.reactions.values())

    @property
    def speaker(self) -> str:
        """The name shown to the model: nickname if set, else the username."""
        return self.author_display or self.author_name
