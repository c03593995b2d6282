"""DiscordChatExporter JSON import into the message store.

Only `id`, `timestamp`, `content` and `author` are required of a message; every other key is
optional, as it was across the exporter's versions. Messages that retrieval should not see are
skipped and counted by reason.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from indexes.records import StoredMessage

logger = logging.getLogger(__name__)

SYSTEM_TYPES = {
    "GuildMemberJoin", "ChannelPinnedMessage", "ThreadCreated", "RecipientAdd", "RecipientRemove",
    "Call", "ChannelNameChange", "ChannelIconChange", "GuildBoost", "GuildBoostTier1",
    "GuildBoostTier2", "GuildBoostTier3", "ChannelFollowAdd", "ThreadStarterMessage",
}  # fmt: skip
CONVERSATION_TYPES = {"Default", "Reply", "0", "19"}
LINK_ONLY = re.compile(r"^\s*(<?https?://\S+>?\s*)+$")
COMMAND_PREFIXES = ("!", "/", "?", ".", "$", "-", ";;")


class ImportError_(ValueError):
    """An export cannot be read; the message names the file and the position."""


@dataclass
class ImportReport:
    """What an import read, kept and skipped."""

    read: int = 0
    kept: int = 0
    skipped: Counter = field(default_factory=Counter)
    channel_id: int | None = None
    guild_id: int | None = None

    def summary(self) -> str:
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(self.skipped.items())) or "none"
        return f"read {self.read}, kept {self.kept}, skipped {sum(self.skipped.values())} ({reasons})"


def _parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def skip_reason(message: StoredMessage, opted_out: set[int] = frozenset()) -> str | None:
    """Why a message should not go into the store, or None to keep it."""
    if message.type not in CONVERSATION_TYPES and (message.type in SYSTEM_TYPES or not message.type.isdigit()):
        return "system"
    if message.author_is_bot:
        return "bot"
    if message.author_id in opted_out:
        return "opted_out"
    text = message.content.strip()
    if not text:
        return "empty"
    if LINK_ONLY.match(text):
        return "link_only"
    if text.startswith(COMMAND_PREFIXES) and len(text.split()) <= 3:
        return "command"
    return None


def parse_json_message(raw: dict, channel_id: int, guild_id: int | None) -> StoredMessage:
    """One exporter message dict to a StoredMessage (KeyError/ValueError on a broken one)."""
    author = raw["author"]
    reference = raw.get("reference") or {}
    message_type = raw.get("type", "Default")
    return StoredMessage(
        id=int(raw["id"]),
        channel_id=channel_id,
        guild_id=guild_id,
        author_id=int(author["id"]),
        author_name=str(author.get("name") or author["id"]),
        author_display=str(author.get("nickname") or ""),
        author_is_bot=bool(author.get("isBot", False)),
        type=str(message_type),
        timestamp=datetime.fromisoformat(raw["timestamp"]),
        edited_at=_parse_time(raw.get("timestampEdited")),
        content=str(raw["content"] or ""),
        reply_to=int(reference["messageId"]) if reference.get("messageId") else None,
        is_pinned=bool(raw.get("isPinned", False)),
        reactions={
            (r.get("emoji") or {}).get("name") or "?": int(r.get("count") or 0)
            for r in raw.get("reactions") or []
        },
        mentions=[int(m["id"]) for m in raw.get("mentions") or [] if m.get("id")],
        attachments=[str(a.get("fileName") or a.get("url") or "") for a in raw.get("attachments") or []],
    )


def read_json_export(path: Path, opted_out: set[int] = frozenset()) -> tuple[list[StoredMessage], ImportReport]:
    """Read a DiscordChatExporter JSON export; return the kept messages and a report."""
    try:
        data = json.loads(path.read_bytes())
    except json.JSONDecodeError as exc:
        raise ImportError_(f"{path}: not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except UnicodeDecodeError as exc:
        raise ImportError_(f"{path}: not UTF-8 at byte {exc.start}") from None
    if not isinstance(data, dict) or not isinstance(data.get("messages"), list):
        raise ImportError_(f"{path}: not a DiscordChatExporter JSON export (no 'messages' list)")
    channel = data.get("channel") or {}
    guild = data.get("guild") or {}
    report = ImportReport(
        channel_id=int(channel["id"]) if channel.get("id") else None,
        guild_id=int(guild["id"]) if guild.get("id") else None,
    )
    kept: list[StoredMessage] = []
    for position, raw in enumerate(data["messages"]):
        report.read += 1
        try:
            message = parse_json_message(raw, report.channel_id or 0, report.guild_id)
        except (KeyError, TypeError, ValueError) as exc:
            logger.warning("%s: message #%d skipped: malformed (%s)", path, position, exc)
            report.skipped["malformed"] += 1
            continue
        reason = skip_reason(message, opted_out)
        if reason:
            report.skipped[reason] += 1
            continue
        kept.append(message)
    report.kept = len(kept)
    return kept, report
