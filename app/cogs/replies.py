"""Replies: which messages ask for one, the ordered queue, the cooldown, and streaming them into Discord.

A message that @mentions the bot or replies to one of its messages asks for a reply: it joins a
bounded queue that one worker drains in order. A member with a reply still pending, or whose last
reply was delivered less than USER_COOLDOWN_SECONDS ago, gets a reaction instead; a full queue gets
an in-character busy line: never silence. The chain streams on the event loop (generation runs on
the generation service's thread, so heartbeats go on) and the reply is posted at its first sentence
and edited as it grows (see app.delivery). Every channel message goes to short-term memory, in the
order it came, before anything awaits. The bot ignores itself and other bots, so it cannot loop,
and answers each message once even if Discord delivers it again. Each post is kept with the ids of
the messages its prompt held: when one is deleted, edited or forgotten, the lines quoting its old
words are edited out of the post (`unquote`).
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import discord
from aiolimiter import AsyncLimiter
from discord.ext import commands

from app.cogs import in_scope
from app.delivery import EDIT_WINDOW_SECONDS, EDITS_PER_WINDOW, StreamedReply, safe_call, without_quotes
from chains.types import ChatMessage

if TYPE_CHECKING:  # the bot imports the cogs; they only name its type
    from app.bot import CharacterBot
    from app.stats import BotStats

logger = logging.getLogger(__name__)

COOLDOWN_REACTION = "\N{HOURGLASS WITH FLOWING SAND}"
REMEMBERED_IDS = 2000
POSTS_KEPT = 500  # the newest posts of the character's, kept with the messages they were made from
UNQUOTED = "*(This reply quoted a message that was deleted or changed since.)*"


@dataclass
class Job:
    message: discord.Message
    chat: ChatMessage
    received: float


class Replies(commands.Cog):
    """Triggers, the reply queue and its worker, cooldowns and busy lines."""

    def __init__(self, bot: CharacterBot) -> None:
        self.bot = bot
        self.queue: asyncio.Queue[Job] = asyncio.Queue(maxsize=bot.settings.REPLY_QUEUE_LIMIT)
        self.cooldowns = self._cooldowns(bot.settings)
        self._pending_authors: set[int] = set()  # members with a reply queued or being made
        self._told_busy: set[int] = set()  # members told the queue is full, until it has room again
        self._edits = AsyncLimiter(EDITS_PER_WINDOW, EDIT_WINDOW_SECONDS)
        self._answered: collections.OrderedDict[int, None] = collections.OrderedDict()
        self._own_messages: collections.deque[int] = collections.deque(maxlen=REMEMBERED_IDS)
        self._busy_lines = itertools.count()
        self._worker: asyncio.Task | None = None
        self.answering: int | None = None  # the message whose reply is being made and posted, if any
        # post id -> (the post, its text, the ids of the messages its prompt held): see `unquote`
        self._made_from: collections.OrderedDict[int, tuple[discord.Message, str, frozenset[int]]] = (
            collections.OrderedDict()
        )
        self._unquoting = asyncio.Lock()

    @staticmethod
    def _cooldowns(settings) -> commands.CooldownMapping:
        return commands.CooldownMapping.from_cooldown(1, settings.USER_COOLDOWN_SECONDS, commands.BucketType.user)

    def apply(self, settings) -> None:
        """Settings changed (`!reload`): a new cooldown length, from now on."""
        self.cooldowns = self._cooldowns(settings)

    async def cog_load(self) -> None:
        self._worker = asyncio.create_task(self._reply_worker(), name="reply-worker")

    async def cog_unload(self) -> None:
        if self._worker:
            self._worker.cancel()

    @property
    def stats(self) -> BotStats:
        return self.bot.stats

    # --- triggers ------------------------------------------------------------------------------

    def triggers_reply(self, message: discord.Message) -> bool:
        """An @mention of the bot, a reply to one of its messages, or (if enabled) a DM."""
        if isinstance(message.channel, discord.DMChannel):
            return True
        if self.bot.user in message.mentions:
            return True
        reference = message.reference
        if reference is None or reference.message_id is None:
            return False
        resolved = reference.resolved
        if isinstance(resolved, discord.Message):
            return resolved.author.id == self.bot.user.id
        return reference.message_id in self._own_messages

    def _first_time(self, message_id: int) -> bool:
        """True the first time a message id is seen (Discord may deliver an event again)."""
        if message_id in self._answered:
            return False
        self._answered[message_id] = None
        while len(self._answered) > REMEMBERED_IDS:
            self._answered.popitem(last=False)
        return True

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        if message.author.id == self.bot.user.id:
            self._own_messages.append(message.id)
            return
        if message.author.bot or not in_scope(message, self.bot.settings) or not self._first_time(message.id):
            return
        self.stats.seen += 1
        # Decide now: discord.py updates this object in place if an edit arrives while we await,
        # and a message edited into a mention later must not trigger a reply.
        triggered = self.triggers_reply(message)
        chat = ChatMessage(
            author=message.author.display_name,
            content=message.clean_content,
            author_id=message.author.id,
            message_id=message.id,
        )
        context = await self.bot.get_context(message)
        if context.valid:
            return  # a command: the bot runs it
        # Memory and the queue before any thread hop, so replies follow the order messages came in.
        self.bot.runtime.observe(message.channel.id, chat)
        if triggered:
            await self._request_reply(message, chat)

    async def _request_reply(self, message: discord.Message, chat: ChatMessage) -> None:
        """Queue a reply, unless the member has one pending or got one too recently (then: a reaction)."""
        pending = message.author.id in self._pending_authors
        retry_after = self.cooldowns.get_bucket(message).get_retry_after()
        if pending or retry_after:
            self.stats.refused("pending" if pending else "cooldown")
            why = "a reply is still pending" if pending else f"cooldown, {retry_after:.1f} s left"
            logger.info("%s asked again (%s): reacting instead of replying", message.author, why)
            await safe_call(message.add_reaction(COOLDOWN_REACTION))
            return
        try:
            self.queue.put_nowait(Job(message, chat, time.monotonic()))
        except asyncio.QueueFull:
            if message.author.id in self._told_busy:  # one busy line per member while the queue is full
                self.stats.refused("busy_again")
                logger.info("reply queue full (%d): %s was told already, reacting", self.queue.maxsize, message.author)
                await safe_call(message.add_reaction(COOLDOWN_REACTION))
                return
            self.stats.refused("busy")
            self._told_busy.add(message.author.id)
            logger.info("reply queue full (%d): busy line for %s", self.queue.maxsize, message.author)
            line = self.bot.runtime.persona.busy(next(self._busy_lines))
            await StreamedReply(message, self._edits, ping=False).finish(line)
            return
        self._pending_authors.add(message.author.id)

    # --- replies -------------------------------------------------------------------------------

    async def _reply_worker(self) -> None:
        """One reply at a time, in the order asked."""
        while True:
            job = await self.queue.get()
            self._told_busy.clear()  # the queue has room again
            self.answering = job.message.id
            try:
                await self._answer(job)
            except Exception:
                logger.exception("reply to message %s failed", job.message.id)
            finally:
                self.answering = None
                self.queue.task_done()

    def made_from(self) -> set[int]:
        """The ids of the messages the character's kept posts were made from."""
        return {i for _, _, sources in self._made_from.values() for i in sources}

    async def unquote(self, gone: dict[int, str], now: dict[int, str] | None = None) -> int:
        """Messages deleted, edited or forgotten (`gone`: id -> their old words; `now`: an edited one's new
        words): the character's posts made from them lose every line quoting the old words (a post left
        with nothing says it quoted a message that is gone). One pass at a time, each reading the posts as
        the last pass left them. Returns how many posts were edited."""
        if not gone:
            return 0
        now = now or {}
        edited = 0
        async with self._unquoting:
            for post_id in [i for i, (_, _, sources) in self._made_from.items() if not sources.isdisjoint(gone)]:
                if post_id not in self._made_from:  # no longer kept (a newer post pushed it out meanwhile)
                    continue
                post, text, sources = self._made_from[post_id]
                quoted = [gone[i] for i in sources & gone.keys()]
                kept = without_quotes(text, quoted, [now[i] for i in sources & now.keys()])
                if kept == text:
                    continue
                kept = kept or UNQUOTED
                try:
                    async with self._edits:
                        await post.edit(content=kept, allowed_mentions=discord.AllowedMentions.none())
                except discord.NotFound:  # deleted meanwhile (by a moderator): nothing left to show
                    del self._made_from[post_id]
                    continue
                except discord.HTTPException as exc:
                    logger.warning("could not take a quote out of post %s: %s %s", post_id, exc.status, exc.text)
                    continue
                self._made_from[post_id] = (post, kept, sources)
                edited += 1
                logger.info("post %s no longer quotes a message that was deleted or changed", post_id)
        return edited

    async def _answer(self, job: Job) -> None:
        """Stream the reply into Discord; the member's cooldown starts when it is delivered."""
        bot, settings = self.bot, self.bot.settings
        reply = StreamedReply(job.message, self._edits, settings.STREAM_EDIT_SECONDS)
        # With members waiting, a reply is posted once, complete: edits would spend the channel's
        # rate limit that the next replies need.
        stream = settings.STREAM_REPLIES and self.queue.empty()
        result = None
        try:
            try:
                async with job.message.channel.typing():
                    async for result in bot.runtime.astream(job.message.channel.id, job.chat):
                        if result.partial and stream:
                            await reply.update(result.text)
            except Exception:
                logger.exception("generation failed for message %s: sending the fallback line", job.message.id)
                result = None
            if result is None or result.partial:
                await reply.finish(bot.runtime.persona.fallback())
                self.stats.record(time.monotonic() - job.received, 0, 0.0, False)
                return
            await reply.finish(result.text)
            for post, text in reply.posts:
                self._made_from[post.id] = (post, text, result.sources)
            while len(self._made_from) > POSTS_KEPT:
                self._made_from.popitem(last=False)
            await self.unquote(*bot.runtime.gone_words(result.sources))  # gone while the reply was being made
            first = reply.first_visible - job.received if reply.first_visible else None
            self.stats.record(
                time.monotonic() - job.received,
                result.generated_tokens,
                result.timings.get("generate", 0.0),
                result.ok,
                first,
                result.prompt_tokens if result.reuse_reported else 0,
                result.reused_tokens,
            )
        finally:
            self._pending_authors.discard(job.message.author.id)
            self.cooldowns.get_bucket(job.message).update_rate_limit()  # counts from the delivered reply
