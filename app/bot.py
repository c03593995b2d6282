"""The character in Discord: a discord.py bot that lives in one channel.

The bot itself is thin: it connects, holds the runtime and the settings, and adds one cog per
concern (app.cogs): `Replies` (triggers, the ordered reply queue, cooldowns, streaming replies),
`Ingestion` (every channel message and edit into the store and the index, and catching up after a
restart) and the commands (`Character`: stats, reload, clearstm, train, forgetme). Commands work
only where the character lives, and their errors are handled in one place here: a short message
in the channel, the whole story in the log.
"""

from __future__ import annotations

import asyncio
import logging
import signal

import discord
from discord.ext import commands

from app.backfill import point_discord_at
from app.cogs import in_scope
from app.cogs.admin import REFUSAL, Admin
from app.cogs.ingestion import Ingestion
from app.cogs.replies import COOLDOWN_REACTION, Replies
from app.metrics import Metrics, metrics_app, serve
from app.runtime import Runtime
from app.stats import BotStats
from config.settings import Settings, SettingsError
from indexes.members import ALL_WARNING
from indexes.vector import IndexUnavailable
from llm.model import ModelLoadError
from prompts import PromptError

logger = logging.getLogger(__name__)

__all__ = [
    "COOLDOWN_REACTION",
    "CharacterBot",
    "check_bot_settings",
    "explain_startup_error",
    "point_gateway_at",
    "run_bot",
]


def point_gateway_at(url: str) -> None:
    """Connect discord.py's gateway to `url` (Discord's own, a gateway proxy, or a local fake)."""
    import yarl

    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(url)


class OutOfScope(commands.CheckFailure):
    """A command used outside the character's channel: ignored without a word."""


# What an admin is told when a command fails, by the kind of failure (the log has the details).
FAILURES = (
    (SettingsError, "the settings are not valid"),
    (PromptError, "a prompt or persona file is not valid"),
    (ModelLoadError, "the model or adapter could not be loaded"),
    (IndexUnavailable, "the lore index is not available"),
)


class CharacterBot(commands.Bot):
    """The bot: its connection, the runtime, the cogs, and the one command-error handler."""

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
        self.metrics = Metrics() if settings.METRICS_PORT else None
        self.stats = BotStats(metrics=self.metrics)
        self._metrics_server = None
        self.add_check(self._in_scope)

    async def _in_scope(self, ctx: commands.Context) -> bool:
        if ctx.interaction is None and not in_scope(ctx.message, self.settings):
            raise OutOfScope()
        return True

    async def setup_hook(self) -> None:
        if self.settings.TRAINING_CONSENT == "all":
            logger.warning("%s", ALL_WARNING)  # said where the admin sees it, not only when training runs
        for cog in (Replies(self), Ingestion(self), Admin(self)):
            await self.add_cog(cog)
        if self.metrics is not None:
            await self._serve_metrics()
        if self.settings.DISCORD_GUILD_ID:
            guild = discord.Object(self.settings.DISCORD_GUILD_ID)
            self.tree.copy_global_to(guild=guild)
            await self.tree.sync(guild=guild)

    async def _serve_metrics(self) -> None:
        """/metrics and /healthz on METRICS_HOST:METRICS_PORT, on this event loop."""
        runtime, replies = self.runtime, self.get_cog("Replies")
        index = runtime.lore_index
        self.metrics.watch(
            queue_depth=lambda: replies.queue.qsize(),
            index_size=lambda: index.size() if index is not None else 0,
            pending=lambda: runtime.ingestion.waiting,
        )
        app = metrics_app(self.metrics, self.health)
        self._metrics_server = await serve(app, self.settings.METRICS_HOST, self.settings.METRICS_PORT)

    def health(self) -> str | None:
        """None while the bot can answer (connected to Discord, its generation service running), else why not."""
        if self.is_closed():
            return "the bot is shutting down"
        if not self.is_ready() or self.ws is None or not self.ws.open:
            return "not connected to Discord"
        if not self.runtime.service.running:
            return "the generation service is not running"
        return None

    async def close(self) -> None:
        try:
            if self._metrics_server is not None:
                server, self._metrics_server = self._metrics_server, None
                await server.cleanup()
        finally:
            await super().close()

    def apply_settings(self, settings: Settings) -> None:
        """New settings after `!reload` (the runtime has taken them already)."""
        self.settings = settings
        self.get_cog("Replies").apply(settings)

    async def on_ready(self) -> None:
        channel = self.get_channel(self.settings.DISCORD_CHANNEL_ID)
        if channel is None:
            logger.error(
                "channel %s is not visible to the bot: check DISCORD_CHANNEL_ID, that the bot is in the server, "
                "and that it may View Channel there",
                self.settings.DISCORD_CHANNEL_ID,
            )
        logger.info(
            "logged in as %s (%s); living in #%s",
            self.user,
            self.user.id if self.user else "?",
            getattr(channel, "name", "?"),
        )

    async def on_message(self, message: discord.Message) -> None:
        if not message.author.bot:
            await self.process_commands(message)

    async def on_command_error(self, ctx: commands.Context, error: commands.CommandError) -> None:
        """Every command's failure: a short message in the channel, the whole story in the log."""
        original = getattr(error, "original", error)
        if isinstance(error, (commands.CommandNotFound, OutOfScope)):
            return  # other bots share the prefix; other channels are not the character's
        if isinstance(error, commands.CheckFailure):
            await self._tell(ctx, str(error) or REFUSAL, ephemeral=True)
            return
        kind = next((what for types, what in FAILURES if isinstance(original, types)), None)
        logger.error("command %s failed", ctx.command, exc_info=(type(original), original, original.__traceback__))
        if kind:
            await self._tell(ctx, f"That did not work: {kind}; nothing was changed. The details are in the bot's log.")
        else:
            await self._tell(ctx, "That did not work; the details are in the bot's log.")

    @staticmethod
    async def _tell(ctx: commands.Context, text: str, ephemeral: bool = False) -> None:
        try:
            await ctx.reply(text, mention_author=False, ephemeral=ephemeral)
        except discord.HTTPException as exc:
            logger.warning("could not answer a command: %s %s", exc.status, exc.text)


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
    missing = []
    if not settings.DISCORD_BOT_TOKEN or not settings.DISCORD_BOT_TOKEN.get_secret_value().strip():
        missing.append("DISCORD_BOT_TOKEN: Developer Portal > Applications > your bot > Bot > Reset Token")
    if not settings.DISCORD_GUILD_ID:
        missing.append(
            "DISCORD_GUILD_ID: in Discord, User Settings > Advanced > Developer Mode, "
            "then right-click the server > Copy Server ID"
        )
    if not settings.DISCORD_CHANNEL_ID:
        missing.append("DISCORD_CHANNEL_ID: right-click the channel > Copy Channel ID (Developer Mode on)")
    if missing:
        raise SettingsError("The bot needs these settings (in .env or the environment):\n  " + "\n  ".join(missing))


async def run_bot(runtime: Runtime, settings: Settings) -> None:
    """Start the bot and run until it is closed, or told to stop.

    SIGTERM (`docker stop`, systemd) and SIGINT (Ctrl-C) close it cleanly: it leaves the gateway and
    the caller closes the store and index. SIGINT is handled even where the process inherited it
    ignored (started in the background by a shell without job control).
    """
    point_discord_at(settings.DISCORD_API_BASE)
    point_gateway_at(settings.DISCORD_GATEWAY_URL)
    bot = CharacterBot(runtime, settings)
    loop = asyncio.get_running_loop()
    stop_signals = [signal.SIGTERM, signal.SIGINT] if hasattr(signal, "SIGTERM") else []
    for number in stop_signals:
        try:
            loop.add_signal_handler(number, _stop, bot, signal.Signals(number).name)
        except (NotImplementedError, RuntimeError):  # Windows, or not the main thread: the defaults apply
            stop_signals = []
            break
    try:
        async with bot:
            await bot.start(settings.DISCORD_BOT_TOKEN.get_secret_value())
    finally:
        for number in stop_signals:
            loop.remove_signal_handler(number)


def _stop(bot: CharacterBot, name: str) -> None:
    logger.info("%s received: closing", name)
    asyncio.get_running_loop().create_task(bot.close())
