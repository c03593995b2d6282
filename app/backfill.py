"""Backfill: the configured channel's history read from Discord with discord.py, oldest first.

Only the REST API is used (no gateway connection). Pages of 100 messages are fetched at most
REQUESTS_PER_SECOND (aiolimiter); discord.py's own rate-limit handling still answers any 429.
Each page is written to the store in the same transaction as the checkpoint (the last message id
read) and the index log, so a run killed at any point, even with SIGKILL, resumes after the last
stored page, every message ends up in the store exactly once, and none is left out of the index
(what is logged is indexed at the end, or at the next start). Lore is scored at the end.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import discord
from aiolimiter import AsyncLimiter

from app.storage import import_filters
from errors import UserError
from indexes.lore import classify_store
from indexes.records import StoredMessage
from indexes.store import MessageStore
from indexes.vector import LoreIndex

logger = logging.getLogger(__name__)

PAGE_SIZE = 100
TYPE_NAMES = {
    discord.MessageType.default: "Default",
    discord.MessageType.reply: "Reply",
    discord.MessageType.new_member: "GuildMemberJoin",
    discord.MessageType.pins_add: "ChannelPinnedMessage",
    discord.MessageType.thread_created: "ThreadCreated",
}


class BackfillError(UserError, RuntimeError):
    """Backfill cannot go on; the message says what to fix. Progress so far is kept."""


def point_discord_at(api_base: str) -> None:
    """Send discord.py's REST calls to `api_base` (Discord's own, a proxy, or a local fake)."""
    discord.http.Route.BASE = api_base.rstrip("/")


def from_discord(message: discord.Message) -> StoredMessage:
    """A discord.py message as the store keeps it."""
    author = message.author
    reactions: dict[str, int] = {}
    for reaction in message.reactions:
        name = getattr(reaction.emoji, "name", None) or str(reaction.emoji)
        reactions[name] = reactions.get(name, 0) + reaction.count
    reference = message.reference
    return StoredMessage(
        id=message.id,
        channel_id=message.channel.id,
        guild_id=message.guild.id if message.guild else None,
        author_id=author.id,
        author_name=author.name,
        author_display=getattr(author, "nick", None) or getattr(author, "global_name", None) or "",
        author_is_bot=author.bot,
        type=TYPE_NAMES.get(message.type, str(message.type.value)),
        timestamp=message.created_at,
        edited_at=message.edited_at,
        content=message.content,
        reply_to=reference.message_id if reference and reference.message_id else None,
        is_pinned=message.pinned,
        reactions=reactions,
        mentions=[user.id for user in message.mentions],
        attachments=[a.filename for a in message.attachments],
        discord_id=True,
        private=getattr(message.channel, "type", None) == discord.ChannelType.private_thread,
    )


@dataclass
class BackfillReport:
    pages: int = 0
    read: int = 0
    stored: int = 0
    skipped: Counter = field(default_factory=Counter)
    resumed_after: int = 0
    indexed: int = 0
    lore: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        reasons = ", ".join(f"{k} {v:,}" for k, v in sorted(self.skipped.items())) or "none"
        resumed = f" (resumed after message {self.resumed_after})" if self.resumed_after else ""
        rate = self.read / self.seconds if self.seconds else 0.0
        return (
            f"pages       {self.pages:,}{resumed}\n"
            f"messages    {self.read:,} read, {self.stored:,} stored\n"
            f"skipped     {sum(self.skipped.values()):,} ({reasons})\n"
            f"index       {self.indexed:,} messages indexed, {self.lore:,} lore in the store\n"
            f"time        {self.seconds:.1f} s, {rate:,.0f} messages/s"
        )


async def backfill(
    settings, store: MessageStore, index: LoreIndex | None, progress: Callable[[int], None] | None = None
) -> BackfillReport:
    """Collect the configured channel's history into the store (resuming), then index it."""
    token = settings.DISCORD_BOT_TOKEN.get_secret_value() if settings.DISCORD_BOT_TOKEN else ""
    channel_id = settings.DISCORD_CHANNEL_ID
    if not token or not channel_id:
        raise BackfillError("backfill needs DISCORD_BOT_TOKEN and DISCORD_CHANNEL_ID (see .env.example)")
    checkpoint_key = f"backfill:{channel_id}:after"
    report = BackfillReport(resumed_after=int(store.get_meta(checkpoint_key) or 0))
    started = time.perf_counter()
    point_discord_at(settings.DISCORD_API_BASE)
    discord.VoiceClient.warn_nacl = discord.VoiceClient.warn_dave = False  # no voice here: no warning
    client = discord.Client(intents=discord.Intents(guilds=True))
    try:
        await _login(client, token, settings.DISCORD_API_BASE)
        channel = await _channel(client, channel_id)
        limiter = AsyncLimiter(1, 1.0 / settings.REQUESTS_PER_SECOND)
        after = report.resumed_after
        while True:
            async with limiter:
                page = [
                    m async for m in channel.history(limit=PAGE_SIZE, after=discord.Object(after), oldest_first=True)
                ]
            if not page:
                break
            filters = import_filters(settings, store.opted_out())
            kept = []
            for message in page:
                stored = from_discord(message)
                reason = filters.reason(stored)
                if reason:
                    report.skipped[reason] += 1
                    continue
                stored.content = stored.content[: filters.max_chars]
                kept.append(stored)
            after = page[-1].id
            store.upsert(kept, meta={checkpoint_key: str(after)}, seen=(channel_id, after))
            report.pages += 1
            report.read += len(page)
            report.stored += len(kept)
            if progress:
                progress(report.read)
            if len(page) < PAGE_SIZE:
                break
    except discord.Forbidden as exc:
        raise BackfillError(
            f"the bot may not read channel {channel_id} ({exc.text or exc}): give it View Channel and "
            "Read Message History in that channel"
        ) from None
    except discord.HTTPException as exc:
        raise BackfillError(
            f"Discord answered {exc.status} ({exc.text or exc}); run backfill again to resume"
        ) from None
    except OSError as exc:
        raise BackfillError(f"connection to Discord lost ({exc}); run backfill again to resume") from None
    finally:
        await client.close()
    report.lore = classify_store(store, settings.LORE_KEYWORDS)
    if index is not None:
        report.indexed = index.sync() if index.active_name else index.rebuild()
    report.seconds = time.perf_counter() - started
    return report


async def _login(client: discord.Client, token: str, api_base: str) -> None:
    try:
        await client.login(token)
    except discord.LoginFailure:
        raise BackfillError(
            "Discord rejected DISCORD_BOT_TOKEN: copy the token again from the Developer Portal "
            "(Applications > your bot > Bot > Reset Token)"
        ) from None
    except (OSError, discord.HTTPException) as exc:
        raise BackfillError(f"cannot reach Discord at {api_base}: {exc}") from None


async def _channel(client: discord.Client, channel_id: int):
    try:
        return await client.fetch_channel(channel_id)
    except discord.NotFound:
        raise BackfillError(
            f"channel {channel_id} not found: check DISCORD_CHANNEL_ID and that the bot is in that server"
        ) from None
