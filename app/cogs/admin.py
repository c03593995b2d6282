"""The bot's commands, as hybrid commands: each works as `!name` and as the slash command `/name`.

Admin commands (`stats`, `reload`, `clearstm`, `train`) need the Manage Server permission or a role
in ADMIN_ROLE_IDS; others get a short refusal. `forgetme`, `consent` and `mydata` are for every
member, and answered privately (an ephemeral answer to the slash command, a direct message for
`!mydata`); `mydata` and `consent on` at most DATA_COMMAND_RATE times a minute per member, a removal
(`forgetme`, `consent off`) whenever asked. Failures are told
briefly in the channel and logged fully, by the bot's one command-error handler (app.bot).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import TYPE_CHECKING, Literal

import discord
from discord import app_commands
from discord.ext import commands

from config.settings import RESTART_SETTINGS, load_settings

if TYPE_CHECKING:  # the bot imports the cogs; they only name its type
    from app.bot import CharacterBot

logger = logging.getLogger(__name__)

REFUSAL = "Only server admins (Manage Server, or an admin role) can use that."
# What a member asks of their data (`!mydata`, `!consent`), at most this many times a minute: each queues work on the
# single writer behind every message, which one member repeating a command must not hold up. A removal (`!forgetme`,
# `!consent off`) is never refused: a repeat while one of that member's is still waiting joins it instead.
DATA_COMMAND_RATE = 3
DATA_COMMAND_PER = 60.0
TOO_SOON = "You just did that: try again in {seconds} s."


def too_soon(ctx: commands.Context) -> float | None:
    """Seconds until this member may use this data command again (None: now), counting this use when allowed.

    Counted by the cog (one bot's count), not on the command: discord.py's `commands.cooldown` keeps its count on
    the command class, shared by every bot of a process.
    """
    rates = ctx.cog.data_rates
    if ctx.command.name not in rates:
        rates[ctx.command.name] = commands.CooldownMapping.from_cooldown(
            DATA_COMMAND_RATE, DATA_COMMAND_PER, commands.BucketType.user
        )
    bucket = rates[ctx.command.name].get_bucket(ctx.message)
    return bucket.update_rate_limit() if bucket else None


def reread_settings(current):
    """Settings from the environment and .env again; the restart-only ones keep their running value.

    Returns (settings, names of restart-only settings whose new value waits for a restart).
    """
    fresh = load_settings()
    waiting = [name for name in RESTART_SETTINGS if getattr(fresh, name) != getattr(current, name)]
    return load_settings(**{name: getattr(current, name) for name in RESTART_SETTINGS}), waiting


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


class Admin(commands.Cog, name="Character"):
    def __init__(self, bot: CharacterBot) -> None:
        self.bot = bot
        self.training: asyncio.Task | None = None
        self.data_rates: dict[str, commands.CooldownMapping] = {}  # see too_soon
        self._removing: dict[tuple[str, int], asyncio.Future] = {}  # see _removal

    async def _in_order(self, work, *args):
        """A member's data command, run after every message of theirs received before it (the ingestion writer's
        order; a thread of its own where ingestion is not loaded)."""
        ingestion = self.bot.get_cog("Ingestion")
        return await (ingestion.after_writes(work, *args) if ingestion else asyncio.to_thread(work, *args))

    async def _removal(self, kind: str, member: int, work, *args):
        """A member's removal (`forgetme`, `consent off`), in the writer's order (`_in_order`). Never refused: the
        same member's same removal asked again while one is still waiting or running joins that one (it comes after
        every message of theirs received before the repeat too), so a member repeating it queues no more work."""
        key = (kind, member)
        running = self._removing.get(key)
        if running is None:
            running = self._removing[key] = asyncio.ensure_future(self._in_order(work, *args))
            running.add_done_callback(lambda _: self._removing.pop(key, None))
        return await asyncio.shield(running)

    @commands.hybrid_command(description="How the character is doing: uptime, replies, latency, model, memory")
    @is_admin()
    async def stats(self, ctx: commands.Context) -> None:
        bot, stats = self.bot, self.bot.stats
        runtime, queue = bot.runtime, bot.get_cog("Replies").queue
        uptime = int(time.monotonic() - stats.started)
        index = runtime.lore_index
        index_size, pending = await asyncio.to_thread(lambda: (index.size(), index.pending())) if index else (0, 0)
        lines = [
            f"**uptime** {uptime // 3600}h {uptime % 3600 // 60}m {uptime % 60}s",
            f"**messages seen** {stats.seen:,}, **replies** {stats.replies:,} ({stats.fallbacks} fallback), "
            f"**busy** {stats.busy}, **cooldowns** {stats.cooled_down}",
            f"**reply latency** P50 {stats.percentile(50):.1f} s, P95 {stats.percentile(95):.1f} s "
            f"(last {len(stats.latencies)}), **first words** P50 {stats.percentile(50, stats.first_words):.1f} s, "
            f"P95 {stats.percentile(95, stats.first_words):.1f} s, "
            f"**generation** {stats.tokens_per_second:.1f} tokens/s",
            f"**prompt tokens** {stats.prompt_tokens:,}: {stats.reused_tokens:,} reused from the engine's cache, "
            f"{stats.prompt_tokens - stats.reused_tokens:,} computed",
            f"**model** {runtime.model.describe()}",
            f"**memory** {_memory_mb():,.0f} MB, **lore index** {index_size:,} messages, {pending:,} pending, "
            f"**queue** {queue.qsize()}/{queue.maxsize}",
        ]
        stale = await asyncio.to_thread(runtime.stale_adapter)
        if stale:
            lines.append(f"**adapter** stale: {stale}")
        await ctx.reply("\n".join(lines), mention_author=False)

    @commands.hybrid_command(description="Re-read prompts and settings, reload the model and adapter")
    @is_admin()
    async def reload(self, ctx: commands.Context) -> None:
        await ctx.defer()
        started = time.perf_counter()
        settings, waiting = await asyncio.to_thread(reread_settings, self.bot.settings)
        model = await asyncio.to_thread(self.bot.runtime.reload, settings)
        self.bot.apply_settings(settings)
        note = f" Changed, used after a restart: {', '.join(waiting)}." if waiting else ""
        await ctx.reply(
            f"Reloaded in {time.perf_counter() - started:.1f} s: {model.describe()}.{note}", mention_author=False
        )

    @commands.hybrid_command(description="Clear this channel's short-term memory and summary")
    @is_admin()
    async def clearstm(self, ctx: commands.Context) -> None:
        self.bot.runtime.memory.clear(ctx.channel.id)
        await ctx.reply("Short-term memory of this channel cleared.", mention_author=False)

    @commands.hybrid_command(description="Train the character's voice on the channel history (LoRA, in the background)")
    @is_admin()
    async def train(self, ctx: commands.Context) -> None:
        if self.training is not None and not self.training.done():
            await ctx.reply("Training is already running; I will say when it is done.", mention_author=False)
            return
        settings = self.bot.settings
        await ctx.reply(
            f"Training started with {settings.TRAIN_RECIPE.name}: data prep, then LoRA. This takes a while.",
            mention_author=False,
        )
        self.training = asyncio.create_task(self._train_then_report(ctx, settings), name="train")

    async def _train_then_report(self, ctx: commands.Context, settings) -> None:
        """Train in child processes, then say how it went; any failure is told, never lost."""
        from app.train import run_training

        log = settings.logs_dir / "train.log"
        try:
            result = await run_training(settings)
            if not result.ok:
                said = next((line for line in reversed(result.tail.splitlines()) if line.startswith("error: ")), "")
                why = f": {said.removeprefix('error: ')[:300]}" if said else ""
                await ctx.send(
                    f"Training failed at {result.step} (exit {result.returncode}){why}. "
                    f"The current adapter stays in use. Details in {log}."
                )
                return
            note = f"Adapter ready: {result.adapter}. Set ADAPTER_PATH to it and !reload."
            if settings.TRAIN_AUTO_RELOAD:
                try:
                    runtime = self.bot.runtime
                    model = await asyncio.to_thread(
                        runtime.reload, runtime.settings.model_copy(update={"ADAPTER_PATH": result.adapter})
                    )
                    note = f"New voice loaded: {model.describe()}."
                except Exception:  # a refused adapter keeps the current model
                    logger.exception("loading the new adapter %s failed", result.adapter)
                    note = (
                        f"Adapter ready at {result.adapter}, but loading it failed; "
                        "the current one stays in use (details in the bot's log)."
                    )
            await ctx.send(f"Training done. {note}")
        except Exception:
            logger.exception("training failed")
            await ctx.send("Training failed; the current adapter stays in use. The details are in the bot's log.")

    @commands.hybrid_command(description="Remove your messages from the character's memory and stop collecting them")
    async def forgetme(self, ctx: commands.Context) -> None:
        if ctx.interaction:
            await ctx.defer(ephemeral=True)
        # By Discord id only: names (exports without ids) could be anyone's nickname; an admin forgets those.
        runtime, replies = self.bot.runtime, self.bot.get_cog("Replies")
        cited = replies.made_from() if replies else set()
        report = await self._removal("forgetme", ctx.author.id, runtime.forget, ctx.author.id, (), cited)
        if replies:  # the character's posts quoting them lose those lines, those posted while it waited its turn too
            await replies.unquote(*runtime.gone_words(cited | replies.made_from()))
        await ctx.reply(
            f"Done: {report.messages} of your messages were removed, and new ones will not be collected. "
            "Models trained before keep what they learned until they are retrained.",
            mention_author=False,
            ephemeral=True,
        )

    @commands.hybrid_command(description="Let the character's voice learn from your messages (on), or stop it (off)")
    @app_commands.describe(choice="on: the voice may learn from your messages; off: withdraw, for training")
    async def consent(self, ctx: commands.Context, choice: Literal["on", "off"] = "on") -> None:
        if ctx.interaction:
            await ctx.defer(ephemeral=True)
        given = choice == "on"
        if given and (retry_after := too_soon(ctx)):
            await ctx.reply(TOO_SOON.format(seconds=math.ceil(retry_after)), mention_author=False, ephemeral=True)
            return
        runtime = self.bot.runtime
        if given:
            dropped = await self._in_order(runtime.set_consent, ctx.author.id, True)
        else:  # a withdrawal is never refused
            dropped = await self._removal("consent off", ctx.author.id, runtime.set_consent, ctx.author.id, False)
        text = (
            "Thank you: the character's voice may learn from your messages at its next training. "
            f"`{'/' if ctx.interaction else ctx.prefix}consent off` withdraws at any time."
            if given
            else f"Withdrawn: your messages will not be trained on ({dropped} prepared samples with your words were "
            "dropped). An adapter trained before is marked to be trained again."
        )
        await ctx.reply(text, mention_author=False, ephemeral=True)

    @commands.hybrid_command(description="What the character keeps about you (answered privately)")
    async def mydata(self, ctx: commands.Context) -> None:
        if ctx.interaction:
            await ctx.defer(ephemeral=True)
        if retry_after := too_soon(ctx):
            await ctx.reply(TOO_SOON.format(seconds=math.ceil(retry_after)), mention_author=False, ephemeral=True)
            return
        found = await self._in_order(self.bot.runtime.member_data, ctx.author.id)
        if ctx.interaction:
            await ctx.reply(found.summary("/"), ephemeral=True)
            return
        try:  # a text command is public: the answer goes by direct message
            await ctx.author.send(found.summary(ctx.prefix))
            await ctx.message.add_reaction("📬")
        except discord.HTTPException:
            await ctx.reply("I could not send you a direct message: use /mydata instead.", mention_author=False)
