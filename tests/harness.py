"""The real discord.py bot against the local fake Discord, for tests: a starter, a harness, waiting for events.

`start_bot` (a fixture in conftest.py) starts the real CharacterBot on a runtime with a scripted
model; `index=True` gives it a real lore index (embedded Chroma, empty at first unless
SAMPLE_EXPORT says otherwise). Tests wait for events with `until`, never a fixed sleep.
"""

import asyncio
from typing import Any

from langchain_core.language_models.llms import LLM

from app.backfill import point_discord_at
from app.bot import CharacterBot, point_gateway_at
from app.runtime import build_runtime
from config.settings import load_settings
from fakes.discord_server import TOKEN, FakeDiscord
from fakes.llm import ScriptedLLM
from fakes.polling import until

ALICE, BOB, ADMIN = 1001, 1002, 1003
SENTINEL = 1999  # a member of its own: never refused as "a reply still pending" or cooled down


class Harness:
    def __init__(self, fake: FakeDiscord, bot: CharacterBot, llm: ScriptedLLM) -> None:
        self.fake, self.bot, self.llm = fake, bot, llm

    async def say(self, content: str, author: int = ALICE, **kwargs) -> int:
        return await asyncio.to_thread(self.fake.send_message, content, author, f"user{author}", **kwargs)

    async def answered(self, message_id: int, count: int = 1, timeout: float = 20.0) -> list:
        """Until the bot has posted `count` replies to the message and finished that reply (its last edit made).

        A reply is posted at its first sentence and edited after: until it is finished, the asker still has a
        reply pending, and their next mention would get a reaction instead of a reply.
        """
        replies = self.bot.get_cog("Replies")
        await until(
            lambda: len(self.fake.replies_to(message_id)) >= count and replies.answering != message_id,
            timeout,
            f"a reply to {message_id}",
        )
        return self.fake.replies_to(message_id)

    async def sentinel(self) -> int:
        """A mention after the events under test; once it is answered, the bot has handled everything before it.

        It comes from a member of its own: from the asker, it could arrive while their streamed reply is still
        being finished, and be refused with a reaction as "a reply still pending" (the reply queue's rule).
        """
        asked = await self.say("sentinel: are you still there?", author=SENTINEL, mention_bot=True)
        await self.answered(asked)
        return asked

    async def delivered(self, replies: int = 1, timeout: float = 20.0) -> None:
        """Until the bot has finished `replies` replies (the last edit included)."""
        await until(lambda: self.bot.stats.replies >= replies, timeout, f"{replies} finished replies")


async def bot_starter(tmp_path, tokenizer):
    from llm.model import ModelBundle

    started: list[tuple[FakeDiscord, CharacterBot, asyncio.Task, Any]] = []

    def bundle(llm: LLM) -> ModelBundle:
        return ModelBundle(
            llm=llm,
            tokenizer=tokenizer,
            model=None,
            name="scripted",
            device="cpu",
            quantized=False,
            adapter=None,
            parameters=0,
            weight_bytes=0,
            load_seconds=0.0,
        )

    async def start(
        llm: ScriptedLLM | None = None, fake: FakeDiscord | None = None, index: bool = False, **overrides
    ) -> Harness:
        fake = (fake or FakeDiscord()).start()
        llm = llm or ScriptedLLM()
        values = dict(
            DATA_DIR=tmp_path / "data",
            LOG_DIR=tmp_path / "logs",
            DISCORD_BOT_TOKEN=TOKEN,
            DISCORD_GUILD_ID=fake.guild_id,
            DISCORD_CHANNEL_ID=fake.channel_id,
            DISCORD_API_BASE=fake.api_base,
            DISCORD_GATEWAY_URL=fake.gateway_url,
            USER_COOLDOWN_SECONDS=0,
            RAG_TOP_K=5 if index else 0,
            SUMMARIZE_INTERVAL=1000,
            ADMIN_ROLE_IDS=str(fake.admin_role_id),
            SAMPLE_EXPORT=tmp_path / "no-sample.json",
        )
        settings = load_settings(**{**values, **overrides})
        runtime = build_runtime(
            settings,
            model=bundle(llm),
            with_index=index,
            model_factory=lambda s: bundle(ScriptedLLM(responses=["reloaded"])),
        )
        point_discord_at(settings.DISCORD_API_BASE)
        point_gateway_at(settings.DISCORD_GATEWAY_URL)
        bot = CharacterBot(runtime, settings)
        task = asyncio.create_task(bot.start(TOKEN))
        started.append((fake, bot, task, runtime))
        await asyncio.wait_for(bot.wait_until_ready(), 20)
        return Harness(fake, bot, llm)

    yield start
    for fake, bot, task, runtime in started:
        for post in [*fake.posts, *fake.edits]:  # on every post and edit, whatever the model wrote
            mentions = post.body.get("allowed_mentions") or {}
            assert mentions.get("parse", []) == [] and not mentions.get("roles"), post.body
            assert len(post.content) <= 2000
        await bot.close()
        await asyncio.gather(task, return_exceptions=True)
        fake.stop()
        runtime.close()
    point_discord_at("https://discord.com/api/v10")
    point_gateway_at("wss://gateway.discord.gg/")
