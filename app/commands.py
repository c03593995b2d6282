"""The bot's commands, as hybrid commands: each works as `!name` and as the slash command `/name`.

Admin commands (`stats`, `reload`, `clearstm`) need the Manage Server permission or a role in
ADMIN_ROLE_IDS; others get a short refusal. `forgetme` is for every member. New commands (the
training command, for one) are added as methods of this cog, or as another cog added in
CharacterBot.setup_hook, and get the same checks and error handling.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from discord.ext import commands

from indexes.forget import forget_member
from indexes.vector import IndexUnavailable

if TYPE_CHECKING:
    from app.bot import CharacterBot

logger = logging.getLogger(__name__)

REFUSAL = "Only server admins (Manage Server, or an admin role) can use that."
# Settings the running bot keeps until a restart (its connection, files and queue).
RESTART_ONLY = (
    "DISCORD_BOT_TOKEN", "DISCORD_GUILD_ID", "DISCORD_CHANNEL_ID", "DISCORD_API_BASE", "DISCORD_GATEWAY_URL",
    "DATA_DIR", "CHROMA_HOST", "CHROMA_PORT", "CHROMA_COLLECTION", "EMBED_DTYPE", "LOG_DIR", "COMMAND_PREFIX",
    "ALLOW_DMS", "REPLY_QUEUE_LIMIT",
)  # fmt: skip


def reread_settings(current):
    """Settings from the environment and .env again; the restart-only ones keep their running value.

    Returns (settings, names of restart-only settings whose new value waits for a restart).
    """
    from app.settings import load_settings

    fresh = load_settings()
    waiting = [name for name in RESTART_ONLY if getattr(fresh, name) != getattr(current, name)]
    return load_settings(**{name: getattr(current, name) for name in RESTART_ONLY}), waiting


def is_admin():
    """A check: Manage Server permission, or one of ADMIN_ROLE_IDS."""

    async def predicate(ctx: commands.Context) -> bool:
        author = ctx.author
        permissions = getattr(author, "guild_permissions", None)
        if permissions is not None and permissions.manage_guild:
            return True
        admin_roles = set(ctx.bot.settings.ADMIN_ROLE_IDS)
        if admin_roles and any(role.id in admin_roles for role in getattr(author, "roles", [])):
            return True
        raise commands.CheckFailure(REFUSAL)

    return commands.check(predicate)


def _memory_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 1e6


class AdminCommands(commands.Cog, name="Character"):
    def __init__(self, bot: CharacterBot) -> None:
        self.bot = bot

    @commands.hybrid_command(description="How the character is doing: uptime, replies, latency, model, memory")
    @is_admin()
    async def stats(self, ctx: commands.Context) -> None:
        bot, stats = self.bot, self.bot.stats
        runtime = bot.runtime
        uptime = int(time.monotonic() - stats.started)
        index_size = await asyncio.to_thread(runtime.lore_index.size) if runtime.lore_index else 0
        lines = [
            f"**uptime** {uptime // 3600}h {uptime % 3600 // 60}m {uptime % 60}s",
            f"**messages seen** {stats.seen:,}, **replies** {stats.replies:,} ({stats.fallbacks} fallback), "
            f"**busy** {stats.busy}, **cooldowns** {stats.cooled_down}",
            f"**reply latency** P50 {stats.percentile(50):.1f} s, P95 {stats.percentile(95):.1f} s "
            f"(last {len(stats.latencies)}), **first words** P50 {stats.percentile(50, stats.first_words):.1f} s, "
            f"P95 {stats.percentile(95, stats.first_words):.1f} s, **generation** {stats.tokens_per_second:.1f} tokens/s",
            f"**prompt tokens** {stats.prompt_tokens:,}: {stats.reused_tokens:,} reused from the engine's cache, "
            f"{stats.prompt_tokens - stats.reused_tokens:,} computed",
            f"**model** {runtime.model.describe()}",
            f"**memory** {_memory_mb():,.0f} MB, **lore index** {index_size:,} messages, **queue** {bot.queue.qsize()}/{bot.queue.maxsize}",
        ]
        await ctx.reply("\n".join(lines), mention_author=False)

    @commands.hybrid_command(description="Re-read prompts and settings, reload the model and adapter")
    @is_admin()
    async def reload(self, ctx: commands.Context) -> None:
        await ctx.defer()
        started = time.perf_counter()
        settings, waiting = await asyncio.to_thread(reread_settings, self.bot.settings)
        model = await asyncio.to_thread(self.bot.runtime.reload, settings)
        self.bot.settings = settings
        self.bot.cooldowns = commands.CooldownMapping.from_cooldown(1, settings.USER_COOLDOWN_SECONDS, commands.BucketType.user)
        note = f" Changed, used after a restart: {', '.join(waiting)}." if waiting else ""
        await ctx.reply(f"Reloaded in {time.perf_counter() - started:.1f} s: {model.describe()}.{note}", mention_author=False)

    @commands.hybrid_command(description="Clear this channel's short-term memory and summary")
    @is_admin()
    async def clearstm(self, ctx: commands.Context) -> None:
        self.bot.runtime.memory.clear(ctx.channel.id)
        await ctx.reply("Short-term memory of this channel cleared.", mention_author=False)

    @commands.hybrid_command(description="Train the character's voice on the channel history (LoRA, in the background)")
    @is_admin()
    async def train(self, ctx: commands.Context) -> None:
        from app.train import run_training

        bot = self.bot
        if bot.training is not None and not bot.training.done():
            await ctx.reply("Training is already running; I will say when it is done.", mention_author=False)
            return
        settings = bot.settings
        await ctx.reply(f"Training started with {settings.TRAIN_RECIPE.name}: data prep, then LoRA. This takes a while.", mention_author=False)

        async def train_then_report() -> None:
            result = await run_training(settings)
            if not result.ok:
                await ctx.send(f"Training failed at {result.step} (exit {result.returncode}); the current adapter stays in use. "
                               f"Details in {settings.logs_dir / 'train.log'}.")  # fmt: skip
                return
            note = f"Adapter ready: {result.adapter}. Set ADAPTER_PATH to it and !reload."
            if settings.TRAIN_AUTO_RELOAD:
                try:
                    model = await asyncio.to_thread(bot.runtime.reload, bot.runtime.settings.model_copy(update={"ADAPTER_PATH": result.adapter}))
                    note = f"New voice loaded: {model.describe()}."
                except Exception as exc:  # a refused adapter keeps the current model
                    logger.exception("loading the new adapter failed")
                    note = f"Adapter ready at {result.adapter}, but loading it failed: {exc}"
            await ctx.send(f"Training done. {note}")

        bot.training = asyncio.create_task(train_then_report(), name="train")

    @commands.hybrid_command(description="Remove your messages from the character's memory and stop collecting them")
    async def forgetme(self, ctx: commands.Context) -> None:
        runtime = self.bot.runtime
        if ctx.interaction:
            await ctx.defer(ephemeral=True)
        report = await asyncio.to_thread(forget_member, runtime.store, runtime.lore_index, runtime.settings.DATA_DIR, ctx.author.id)
        await ctx.reply(
            f"Done: {report.messages} of your messages were removed, and new ones will not be collected. "
            "Models trained before keep what they learned until they are retrained.",
            mention_author=False, ephemeral=True,
        )  # fmt: skip

    async def cog_command_error(self, ctx: commands.Context, error: commands.CommandError) -> None:
        original = getattr(error, "original", error)
        if isinstance(error, commands.CheckFailure):
            await ctx.reply(str(error) or REFUSAL, mention_author=False, ephemeral=True)
        elif isinstance(original, IndexUnavailable):
            await ctx.reply(f"The lore index is not available: {original}", mention_author=False)
        else:
            logger.error("command %s failed", ctx.command, exc_info=(type(original), original, original.__traceback__))
            await ctx.reply("That did not work; the details are in the bot's log.", mention_author=False)
        ctx.error_handled = True


async def on_command_error(ctx: commands.Context, error: commands.CommandError) -> None:
    """Errors outside the cog: unknown commands are ignored (other bots share the prefix)."""
    if isinstance(error, commands.CommandNotFound) or getattr(ctx, "error_handled", False):
        return
    logger.error("command error: %s", error)

