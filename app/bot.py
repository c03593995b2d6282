"""The character in Discord: a discord.py bot that lives in one channel.

Every message in the channel (and its threads, if enabled) goes to live ingestion (store, index)
and short-term memory. A message that @mentions the bot or replies to one of its messages asks
for a reply: it joins a bounded queue that one worker drains in order. The chain streams on the
event loop (`astream`; generation runs on the generation service's thread, so heartbeats go on)
while the typing indicator shows; the reply is posted at its first sentence and edited as it grows
(STREAM_REPLIES, see app.delivery). A member with a reply still pending, or whose last reply was
delivered less than USER_COOLDOWN_SECONDS ago, gets a reaction instead; a full queue gets an
in-character busy line: never silence.

Replies answer the triggering message, are split at 2,000 characters, and may ping only the member
they answer (`allowed_mentions`, on posts and edits), whatever the model writes. The bot ignores
itself and other bots, so it cannot loop, and answers each message once even if Discord delivers
it again.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import time
from dataclasses import dataclass, field

import discord
from aiolimiter import AsyncLimiter
from discord.ext import commands

from app.delivery import EDIT_WINDOW_SECONDS, EDITS_PER_WINDOW, StreamedReply, safe_call
from app.runtime import Runtime
from app.settings import Settings
from chains.types import ChatMessage
from indexes.backfill import from_discord, point_discord_at

logger = logging.getLogger(__name__)

COOLDOWN_REACTION = "\N{HOURGLASS WITH FLOWING SAND}"
REMEMBERED_IDS = 2000


def point_gateway_at(url: str) -> None:
    """Connect discord.py's gateway to `url` (Discord's own, a gateway proxy, or a local fake)."""
    import yarl

    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(url)


@dataclass
class BotStats:
    """What `!stats` reports: counts since start and the latency of recent replies."""

    started: float = field(default_factory=time.monotonic)
    seen: int = 0
    replies: int = 0
    fallbacks: int = 0
    busy: int = 0
    cooled_down: int = 0
    latencies: collections.deque = field(default_factory=lambda: collections.deque(maxlen=100))
    first_words: collections.deque = field(default_factory=lambda: collections.deque(maxlen=100))
    tokens: int = 0
    generate_seconds: float = 0.0
    prompt_tokens: int = 0
    reused_tokens: int = 0

    def record(self, seconds: float, generated_tokens: int, generate_seconds: float, ok: bool,
               first_words: float | None = None, prompt_tokens: int = 0, reused_tokens: int = 0) -> None:  # fmt: skip
        self.replies += 1
        self.fallbacks += not ok
        self.latencies.append(seconds)
        if first_words is not None:
            self.first_words.append(first_words)
        self.tokens += generated_tokens
        self.generate_seconds += generate_seconds
        self.prompt_tokens += prompt_tokens
        self.reused_tokens += reused_tokens

    def percentile(self, q: float, values: collections.deque | None = None) -> float:
        values = self.latencies if values is None else values
        if not values:
            return 0.0
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.generate_seconds if self.generate_seconds else 0.0


@dataclass
class Job:
    message: discord.Message
    chat: ChatMessage
    received: float


class CharacterBot(commands.Bot):
    """The bot: channel scope, triggers, the reply queue and the admin commands (app.commands)."""

    def __init__(self, runtime: Runtime, settings: Settings) -> None:
        discord.VoiceClient.warn_nacl = discord.VoiceClient.warn_dave = False  # no voice: no warning
        intents = discord.Intents.default()
        intents.message_content = True
        intents.dm_messages = settings.ALLOW_DMS
        intents.typing = intents.presences = intents.members = False
        super().__init__(
            command_prefix=settings.COMMAND_PREFIX,
            intents=intents,
            help_command=None,
            chunk_guilds_at_startup=False,
            # Nothing the bot sends may ping anyone unless a send widens it to the member it answers.
            allowed_mentions=discord.AllowedMentions(everyone=False, users=False, roles=False, replied_user=False),
        )
        self.runtime = runtime
        self.settings = settings
        self.stats = BotStats()
        self.queue: asyncio.Queue[Job] = asyncio.Queue(maxsize=settings.REPLY_QUEUE_LIMIT)
        self.cooldowns = commands.CooldownMapping.from_cooldown(1, settings.USER_COOLDOWN_SECONDS, commands.BucketType.user)
        self._pending_authors: set[int] = set()  # members with a reply queued or being made
        self._edits = AsyncLimiter(EDITS_PER_WINDOW, EDIT_WINDOW_SECONDS)
        self._answered: collections.OrderedDict[int, None] = collections.OrderedDict()
        self._own_messages: collections.deque[int] = collections.deque(maxlen=REMEMBERED_IDS)
        self._busy_lines = itertools.count()
        self._worker: asyncio.Task | None = None
        self.training: asyncio.Task | None = None

    async def setup_hook(self) -> None:
        from app.commands import AdminCommands

        await self.add_cog(AdminCommands(self))
        self._worker = asyncio.create_task(self._reply_worker(), name="reply-worker")
        if self.settings.DISCORD_GUILD_ID:
            guild = discord.Object(self.settings.DISCORD_GUILD_ID)
            self.tree.copy_global_to(guild=guild)
            await self.tree.sync(guild=guild)

    async def on_ready(self) -> None:
        channel = self.get_channel(self.settings.DISCORD_CHANNEL_ID)
        if channel is None:
            logger.error(
                "channel %s is not visible to the bot: check DISCORD_CHANNEL_ID, that the bot is in the server, "
                "and that it may View Channel there", self.settings.DISCORD_CHANNEL_ID,
            )  # fmt: skip
        logger.info("logged in as %s (%s); living in #%s", self.user, self.user.id if self.user else "?", getattr(channel, "name", "?"))

    # --- scope and triggers --------------------------------------------------------------------

    def in_scope(self, message: discord.Message) -> bool:
        channel = message.channel
        if isinstance(channel, discord.DMChannel):
            return self.settings.ALLOW_DMS
        if channel.id == self.settings.DISCORD_CHANNEL_ID:
            return True
        return self.settings.REPLY_IN_THREADS and isinstance(channel, discord.Thread) and channel.parent_id == self.settings.DISCORD_CHANNEL_ID

    def triggers_reply(self, message: discord.Message) -> bool:
        """An @mention of the bot, a reply to one of its messages, or (if enabled) a DM."""
        if isinstance(message.channel, discord.DMChannel):
            return True
        if self.user in message.mentions:
            return True
        reference = message.reference
        if reference is None or reference.message_id is None:
            return False
        resolved = reference.resolved
        if isinstance(resolved, discord.Message):
            return resolved.author.id == self.user.id
        return reference.message_id in self._own_messages

    def _first_time(self, message_id: int) -> bool:
        """True the first time a message id is seen (Discord may deliver an event again)."""
        if message_id in self._answered:
            return False
        self._answered[message_id] = None
        while len(self._answered) > REMEMBERED_IDS:
            self._answered.popitem(last=False)
        return True

    # --- events --------------------------------------------------------------------------------

    async def on_message(self, message: discord.Message) -> None:
        if message.author.id == self.user.id:
            self._own_messages.append(message.id)
            return
        if message.author.bot or not self.in_scope(message):
            return
        if not self._first_time(message.id):
            return
        self.stats.seen += 1
        # Decide now: discord.py updates this object in place if an edit arrives while we await,
        # and a message edited into a mention later must not trigger a reply.
        triggered = self.triggers_reply(message)
        chat = ChatMessage(author=message.author.display_name, content=message.clean_content, author_id=message.author.id, message_id=message.id)
        context = await self.get_context(message)
        if context.valid:
            await self.invoke(context)
            return
        # Memory and the queue before any thread hop, so replies follow the order messages came in.
        self.runtime.observe(message.channel.id, chat)
        if triggered:
            await self._request_reply(message, chat)
        if not isinstance(message.channel, discord.DMChannel):  # direct messages are never stored
            await asyncio.to_thread(self._ingest, message)

    def _ingest(self, message: discord.Message) -> None:
        try:
            self.runtime.ingest(from_discord(message))
        except Exception:  # the reply still happens; the store catches up on the next import
            logger.exception("live ingestion failed for message %s", message.id)

    async def on_message_edit(self, before: discord.Message, after: discord.Message) -> None:
        """Edits update the store and index; a message edited into a mention does not trigger a reply."""
        if after.author.bot or not self.in_scope(after) or isinstance(after.channel, discord.DMChannel):
            return
        try:
            await asyncio.to_thread(self.runtime.ingest, from_discord(after))
        except Exception:
            logger.exception("live ingestion failed for the edit of message %s", after.id)

    async def _request_reply(self, message: discord.Message, chat: ChatMessage) -> None:
        """Queue a reply, unless the member has one pending or got one too recently (then: a reaction)."""
        pending = message.author.id in self._pending_authors
        retry_after = self.cooldowns.get_bucket(message).get_retry_after()
        if pending or retry_after:
            self.stats.cooled_down += 1
            why = "a reply is still pending" if pending else f"cooldown, {retry_after:.1f} s left"
            logger.info("%s asked again (%s): reacting instead of replying", message.author, why)
            await safe_call(message.add_reaction(COOLDOWN_REACTION))
            return
        try:
            self.queue.put_nowait(Job(message, chat, time.monotonic()))
        except asyncio.QueueFull:
            self.stats.busy += 1
            logger.info("reply queue full (%d): busy line for %s", self.queue.maxsize, message.author)
            await self._send_reply(message, self.runtime.persona.busy(next(self._busy_lines)))
            return
        self._pending_authors.add(message.author.id)

    # --- replies -------------------------------------------------------------------------------

    async def _reply_worker(self) -> None:
        """One reply at a time, in the order asked."""
        while True:
            job = await self.queue.get()
            try:
                await self._answer(job)
            except Exception:
                logger.exception("reply to message %s failed", job.message.id)
            finally:
                self.queue.task_done()

    async def _answer(self, job: Job) -> None:
        """Stream the reply into Discord; the member's cooldown starts when it is delivered."""
        channel_id = job.message.channel.id
        reply = StreamedReply(job.message, self._edits, self.settings.STREAM_EDIT_SECONDS)
        result = None
        try:
            try:
                async with job.message.channel.typing():
                    async for result in self.runtime.astream(channel_id, job.chat):
                        if result.partial and self.settings.STREAM_REPLIES:
                            await reply.update(result.text)
            except Exception:
                logger.exception("generation failed for message %s: sending the fallback line", job.message.id)
                result = None
            if result is None or result.partial:
                await reply.finish(self.runtime.persona.fallback())
                self.stats.record(time.monotonic() - job.received, 0, 0.0, False)
                return
            await reply.finish(result.text)
            first = reply.first_visible - job.received if reply.first_visible else None
            self.stats.record(
                time.monotonic() - job.received, result.generated_tokens, result.timings.get("generate", 0.0), result.ok,
                first, result.prompt_tokens if result.reuse_reported else 0, result.reused_tokens,
            )  # fmt: skip
        finally:
            self._pending_authors.discard(job.message.author.id)
            self.cooldowns.get_bucket(job.message).update_rate_limit()  # counts from the delivered reply

    async def _send_reply(self, message: discord.Message, text: str) -> None:
        """Answer `message` at once (busy lines): the first chunk as a reply pinging only its author, the rest after it."""
        await StreamedReply(message, self._edits).finish(text)

    async def on_command_error(self, ctx: commands.Context, error: commands.CommandError) -> None:
        from app.commands import on_command_error

        await on_command_error(ctx, error)

    async def close(self) -> None:
        if self._worker:
            self._worker.cancel()
        await super().close()


def explain_startup_error(exc: BaseException) -> str | None:
    """A message that says exactly what to fix, for the errors a new bot owner meets first."""
    if isinstance(exc, discord.PrivilegedIntentsRequired):
        return (
            "Discord refused the Message Content intent. Enable it: Developer Portal > Applications > your bot > "
            "Bot > Privileged Gateway Intents > MESSAGE CONTENT INTENT, save, and start the bot again."
        )
    if isinstance(exc, discord.LoginFailure):
        return (
            "Discord rejected DISCORD_BOT_TOKEN. Copy it again from Developer Portal > Applications > your bot > "
            "Bot > Reset Token, and put it in .env (never in git)."
        )
    if isinstance(exc, (OSError, discord.GatewayNotFound)) and not isinstance(exc, discord.HTTPException):
        return f"cannot reach Discord ({exc}); check the network, DISCORD_API_BASE and DISCORD_GATEWAY_URL"
    return None


def check_bot_settings(settings: Settings) -> None:
    """The settings the bot cannot start without, each named with where to find it."""
    from app.settings import SettingsError

    missing = []
    if not settings.DISCORD_BOT_TOKEN or not settings.DISCORD_BOT_TOKEN.get_secret_value().strip():
        missing.append("DISCORD_BOT_TOKEN: Developer Portal > Applications > your bot > Bot > Reset Token")
    if not settings.DISCORD_GUILD_ID:
        missing.append("DISCORD_GUILD_ID: in Discord, User Settings > Advanced > Developer Mode, then right-click the server > Copy Server ID")
    if not settings.DISCORD_CHANNEL_ID:
        missing.append("DISCORD_CHANNEL_ID: right-click the channel > Copy Channel ID (Developer Mode on)")
    if missing:
        raise SettingsError("The bot needs these settings (in .env or the environment):\n  " + "\n  ".join(missing))


async def run_bot(runtime: Runtime, settings: Settings) -> None:
    """Start the bot and run until it is closed."""
    point_discord_at(settings.DISCORD_API_BASE)
    point_gateway_at(settings.DISCORD_GATEWAY_URL)
    bot = CharacterBot(runtime, settings)
    async with bot:
        await bot.start(settings.DISCORD_BOT_TOKEN.get_secret_value())
