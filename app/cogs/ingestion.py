"""Ingestion: every message of the channel (and its threads) into the store and the index, edits too.

Direct messages are never stored. On start the bot catches up with what the channel said while it
was away (stopped, crashed, or killed between receiving a message and storing it): the channel's
history after the newest message read from Discord (the store's `seen` mark, moved in the same
transaction that stores a message) is read back and stored (never answered). An imported export's
ids derived from dates never count: a row dated in the future cannot hide what was missed.
Messages are stored one at a time, in the order they came: were a later one stored before an
earlier one and the bot killed between, the catch-up would skip the earlier one. A restart
therefore loses no message and answers none twice.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

import discord
from discord.ext import commands

from app.cogs import in_scope
from indexes.backfill import from_discord
from indexes.store import StorageError

logger = logging.getLogger(__name__)

CATCH_UP_LIMIT = 2000  # more missed than this: `python -m app backfill` collects the rest


class Ingestion(commands.Cog):
    """Live ingestion of channel messages and edits; catching up after a restart."""

    def __init__(self, bot: commands.Bot) -> None:
        self.bot = bot
        self._caught_up = False
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest")  # one at a time, in order

    async def cog_unload(self) -> None:
        self._writer.shutdown(wait=False)

    async def _store(self, message: discord.Message, seen: bool = True) -> None:
        """Ingest off the event loop, after every message that came before it.

        `seen`: a message read from Discord now (not an edit): the catch-up after a restart starts after it.
        """
        await asyncio.get_running_loop().run_in_executor(self._writer, self._ingest, message, seen)

    def _ingest(self, message: discord.Message, seen: bool) -> None:
        try:
            self.bot.runtime.ingest(from_discord(message), seen=seen)
        except StorageError as exc:  # held in order and written once the disk allows; the reply still happens
            logger.error("message %s not stored yet: %s", message.id, exc)
        except Exception:  # the reply still happens; the catch-up after a restart reads it again
            logger.exception("live ingestion failed for message %s", message.id)

    def _wanted(self, message: discord.Message) -> bool:
        return (
            not message.author.bot
            and in_scope(message, self.bot.settings)
            and not isinstance(message.channel, discord.DMChannel)
        )

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        # get_context does not yield to the loop (the prefix is not looked up remotely): messages
        # reach the writer in the order the gateway delivered them.
        if self._wanted(message) and not (await self.bot.get_context(message)).valid:
            await self._store(message)

    @commands.Cog.listener()
    async def on_message_edit(self, before: discord.Message, after: discord.Message) -> None:
        """Edits update the store and index; a message edited into a mention does not trigger a reply."""
        if self._wanted(after):
            await self._store(after, seen=False)

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
        return read
