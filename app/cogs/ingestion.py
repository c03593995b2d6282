"""Ingestion: every message of the channel (and its threads) into the store and the index, edits too.

Direct messages are never stored. On start the bot catches up with what the channel said while it
was away (stopped, crashed, or killed between receiving a message and storing it): the channel's
history after the newest message read from Discord (the store's `seen` mark, moved in the same
transaction that stores a message) is read back and stored (never answered). An imported export's
ids derived from dates never count: a row dated in the future cannot hide what was missed. Until the
catch-up has read the history, a live message is stored without moving the mark: a member posting as
the bot comes back (or the bot killed again mid-catch-up) cannot make the next catch-up start past
what was missed.
Messages are stored one at a time, in the order they came: were a later one stored before an
earlier one and the bot killed between, the catch-up would skip the earlier one. A restart
therefore loses no message and answers none twice.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import discord
from discord.ext import commands, tasks

from app.backfill import from_discord
from app.cogs import in_scope
from indexes.disk import StorageError

if TYPE_CHECKING:  # the bot imports the cogs; they only name its type
    from app.bot import CharacterBot

logger = logging.getLogger(__name__)

CATCH_UP_LIMIT = 2000  # more missed than this: `python -m app backfill` collects the rest
RECHECK = 100  # the newest messages read again at a start: deleted or edited while the bot was away


class Ingestion(commands.Cog):
    """Live ingestion of channel messages, edits and deletions; catching up after a restart."""

    def __init__(self, bot: CharacterBot) -> None:
        self.bot = bot
        self._caught_up = False
        self._live_moves_seen = False  # until the catch-up has read what was missed
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest")  # one at a time, in order
        self._threads: set[int] = set()  # threads whose channel the store was told of (the writer's only)

    async def cog_load(self) -> None:
        self.retention.start()

    async def cog_unload(self) -> None:
        self.retention.cancel()
        self._writer.shutdown(wait=False)

    @tasks.loop(hours=1)
    async def retention(self) -> None:
        """RETENTION_DAYS: every hour, messages past it are deleted everywhere (nothing when unset)."""
        await self._write(self.bot.runtime.prune)

    async def _write(self, work, *args) -> None:
        """Run a store write off the event loop, after every write that came before it."""
        await asyncio.get_running_loop().run_in_executor(self._writer, self._guarded, work, *args)

    async def after_writes(self, work, *args):
        """Run `work` off the event loop after every message, edit and deletion received before it (the writer's
        order), and return what it returns: "!forgetme" just after a message removes that message too, and no
        message read before it is stored after it."""
        return await asyncio.get_running_loop().run_in_executor(self._writer, work, *args)

    @staticmethod
    def _guarded(work, *args) -> None:
        try:
            work(*args)
        except StorageError as exc:  # held in order and written once the disk allows; the reply still happens
            logger.error("not stored yet: %s", exc)
        except Exception:  # the reply still happens; the catch-up after a restart reads it again
            logger.exception("live ingestion failed")

    async def _store(self, message: discord.Message, seen: bool = True) -> None:
        """A message read from Discord now; `seen`: the catch-up after a restart starts after it."""
        runtime, role = self.bot.runtime, self.bot.settings.CONSENT_ROLE_ID
        roles = getattr(message.author, "roles", None)  # a Member's (a message read back has a User: unknown)
        thread = message.channel if isinstance(message.channel, discord.Thread) else None

        def store() -> None:
            runtime.ingest(from_discord(message), seen=seen)
            if thread is not None and thread.id not in self._threads:
                runtime.store.note_thread(thread.id, thread.parent_id)
                self._threads.add(thread.id)
            if role and roles is not None:
                runtime.consent_role(message.author.id, any(r.id == role for r in roles))

        await self._write(store)

    def _wanted(self, message: discord.Message) -> bool:
        """A member's message the character keeps: its channel or threads, never DMs, private threads by
        PRIVATE_THREADS."""
        if message.author.bot or isinstance(message.channel, discord.DMChannel):
            return False
        if not in_scope(message, self.bot.settings):
            return False
        private = getattr(message.channel, "type", None) == discord.ChannelType.private_thread
        return not private or self.bot.settings.PRIVATE_THREADS == "thread"

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        # get_context does not yield to the loop (the prefix is not looked up remotely): messages
        # reach the writer in the order the gateway delivered them.
        if self._wanted(message) and not (await self.bot.get_context(message)).valid:
            await self._store(message, seen=self._live_moves_seen)

    @commands.Cog.listener()
    async def on_raw_message_edit(self, payload: discord.RawMessageUpdateEvent) -> None:
        """Any edit, of a message in the client's cache or not: the new words replace the old everywhere.

        A message edited into a mention does not trigger a reply (replies read MESSAGE_CREATE only).
        """
        message = payload.message
        if message.author.bot:
            return
        wanted = self._wanted(message)
        cached = payload.cached_message.content if payload.cached_message else None  # the words before

        def edit() -> None:
            runtime = self.bot.runtime
            if wanted or runtime.store.get([message.id]):
                runtime.edited(from_discord(message), message.clean_content, cached)
            else:  # not kept (a private thread, by default), but remembered in its channel
                runtime.remembered_edit(message.id, message.clean_content, message.content, cached)

        await self._write(edit)
        await self._unquote()

    @commands.Cog.listener()
    async def on_raw_message_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        cached = [payload.cached_message] if payload.cached_message else []
        await self._write(self.bot.runtime.delete, {payload.message_id}, {m.id: m.content for m in cached})
        await self._unquote()

    @commands.Cog.listener()
    async def on_raw_bulk_message_delete(self, payload: discord.RawBulkMessageDeleteEvent) -> None:
        cached = {m.id: m.content for m in payload.cached_messages}
        await self._write(self.bot.runtime.delete, set(payload.message_ids), cached)
        await self._unquote()

    @commands.Cog.listener()
    async def on_raw_thread_delete(self, payload: discord.RawThreadDeleteEvent) -> None:
        await self._write(self.bot.runtime.delete_channel, payload.thread_id)
        await self._unquote()

    @commands.Cog.listener()
    async def on_guild_channel_delete(self, channel: discord.abc.GuildChannel) -> None:
        await self._write(self.bot.runtime.delete_channel, channel.id)
        await self._unquote()

    async def _unquote(self) -> None:
        """The character's posts made from words just deleted, edited away or forgotten lose their quotes."""
        replies = self.bot.get_cog("Replies")
        if replies is not None:
            await replies.unquote(*self.bot.runtime.gone_words(replies.made_from()))

    @commands.Cog.listener()
    async def on_ready(self) -> None:
        if self._caught_up:  # on_ready comes again after a reconnect without RESUME
            return
        self._caught_up = True
        try:
            await self.catch_up()
        except discord.HTTPException as exc:
            logger.warning(
                "could not catch up with the channel's history (%s %s); run `python -m app backfill`",
                exc.status,
                exc.text,
            )

    async def catch_up(self) -> int:
        """Store what the channel said after the newest message read from Discord; returns how many were read."""
        settings, runtime = self.bot.settings, self.bot.runtime
        after = await asyncio.to_thread(runtime.store.seen, settings.DISCORD_CHANNEL_ID)
        channel = self.bot.get_channel(settings.DISCORD_CHANNEL_ID)
        if after is None:
            logger.info(
                "no message of this channel read from Discord yet: nothing to catch up (`backfill` collects history)"
            )
            self._live_moves_seen = True
            return 0
        if channel is None:
            return 0
        read = 0
        async for message in channel.history(limit=CATCH_UP_LIMIT, after=discord.Object(after), oldest_first=True):
            read += 1
            if self._wanted(message):
                await self._store(message)
        if read:
            logger.info("caught up with %d messages posted while the bot was away", read)
        if read >= CATCH_UP_LIMIT:
            logger.warning(
                "more than %d messages were missed: run `python -m app backfill` for the rest", CATCH_UP_LIMIT
            )
        self._live_moves_seen = True
        await self.recheck(channel)
        return read

    async def recheck(self, channel) -> tuple[int, int]:
        """The newest RECHECK messages read again: what Discord no longer has is deleted, edits are applied.

        Only messages with Discord's own ids are compared (an export's derived ids are not Discord's).
        Returns (deleted, edited).
        """
        current = [m async for m in channel.history(limit=RECHECK)]
        if not current:
            return 0, 0
        runtime = self.bot.runtime
        ids = [m.id for m in current]
        low = min(ids) if len(current) >= RECHECK else 0  # fewer: that is the channel's whole history
        stored = await asyncio.to_thread(runtime.store.discord_messages, channel.id, low, max(ids))
        gone = set(stored) - set(ids)
        limit = runtime.ingestion.filters.max_chars
        changed = [m for m in current if m.id in stored and stored[m.id] != m.content[:limit] and self._wanted(m)]
        if gone:
            await self._write(runtime.delete, gone)
        for message in changed:
            await self._write(runtime.edited, from_discord(message), message.clean_content)
        if gone or changed:
            logger.info("%d messages deleted and %d edited while the bot was away: applied", len(gone), len(changed))
        return len(gone), len(changed)
