"""Soak benchmark: a busy channel for a few minutes through the real discord.py client and the fake Discord.

50 members post 5,000 ordinary messages and 1,000 mentions, with bursts, gateway reconnects that
replay events, redelivered messages and an edit storm (some edits turn messages into mentions,
which must not be answered). The model is the scripted test model (a short delay per reply), so
what is measured is the bot: the queue, cooldowns, delivery, ingestion (the real store and lore
index) and the event loop. Printed: mentions answered, declined (busy line or cooldown reaction,
each visible to the member), lost (neither: must be 0), duplicated (answered twice: must be 0),
ordinary messages stored (all of them), peak memory and its growth per 1,000 messages, and the
event loop's lag P99.
"""

from __future__ import annotations

import asyncio
import json
import random
import tempfile
import time
from pathlib import Path

from bench.machine import describe, peak_rss_mb, percentile

MEMBERS, MENTIONS, ORDINARY = 50, 1_000, 5_000
BURST_EVERY, BURST_SIZE = 600, 60  # every 600 messages, 60 at once
RECONNECT_EVERY = 1_500
EDIT_STORM = 300
WARM_UP = 1_000  # memory growth is measured from here on


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 1e6


async def _measure(mentions: int, ordinary: int, pace: float) -> dict:
    from app.backfill import point_discord_at
    from app.bot import COOLDOWN_REACTION, CharacterBot, point_gateway_at
    from app.runtime import build_runtime
    from config.logs import setup_logging
    from config.settings import load_settings
    from fakes.discord_server import TOKEN, FakeDiscord
    from fakes.llm import ScriptedLLM
    from llm.model import ModelBundle

    setup_logging("ERROR")
    rng = random.Random(1234)
    fake = FakeDiscord().start()
    with tempfile.TemporaryDirectory() as folder:
        settings = load_settings(
            DATA_DIR=Path(folder),
            LOG_DIR=Path(folder) / "logs",
            DISCORD_BOT_TOKEN=TOKEN,
            DISCORD_GUILD_ID=fake.guild_id,
            DISCORD_CHANNEL_ID=fake.channel_id,
            DISCORD_API_BASE=fake.api_base,
            DISCORD_GATEWAY_URL=fake.gateway_url,
            MODEL_CACHE_DIR=Path("data/models"),
            SEED=1,
            STREAM_EDIT_SECONDS=0.5,
        )
        from llm.model import gguf_tokenizer, packaged_gguf

        llm = ScriptedLLM(
            responses=["mrrp! the cabinet hums. the tavern remembers everything, traveler."],
            delay=0.05,
            piece_delay=0.005,
        )
        bundle = ModelBundle(
            llm=llm,
            tokenizer=gguf_tokenizer(packaged_gguf(), settings.MODEL_CACHE_DIR),
            model=None,
            name="scripted",
            device="cpu",
            quantized=False,
            adapter=None,
            parameters=0,
            weight_bytes=0,
            load_seconds=0.0,
        )
        runtime = build_runtime(settings, model=bundle)
        point_discord_at(settings.DISCORD_API_BASE)
        point_gateway_at(settings.DISCORD_GATEWAY_URL)
        bot = CharacterBot(runtime, settings)
        task = asyncio.create_task(bot.start(TOKEN))
        await asyncio.wait_for(bot.wait_until_ready(), 60)
        lags: list[float] = []

        async def watch_the_loop() -> None:
            while True:
                started = time.monotonic()
                await asyncio.sleep(0.05)
                lags.append(time.monotonic() - started - 0.05)

        watcher = asyncio.create_task(watch_the_loop())
        rss_start, started = None, time.monotonic()
        kinds = ["mention"] * mentions + ["ordinary"] * ordinary
        rng.shuffle(kinds)
        asked, plain, edited_into_mentions = [], [], []
        for number, kind in enumerate(kinds, start=1):
            member = rng.randrange(MEMBERS)
            text = f"message {number}: the tavern talks about topic {number % 37}" + (
                " and asks the cat" if kind == "mention" else ""
            )
            sent = await asyncio.to_thread(
                fake.send_message, text, 7000 + member, f"member{member}", mention_bot=kind == "mention"
            )
            (asked if kind == "mention" else plain).append(sent)
            if number % BURST_EVERY == 0:
                for i in range(BURST_SIZE):  # a burst: everyone talks at once (ordinary messages)
                    plain.append(
                        await asyncio.to_thread(
                            fake.send_message, f"burst {number}-{i} lol", 7000 + i % MEMBERS, f"member{i % MEMBERS}"
                        )
                    )
            if number % RECONNECT_EVERY == 0:
                await asyncio.to_thread(fake.request_reconnect)  # the client RESUMEs; missed events are replayed
                for again in rng.sample(asked[-50:], min(10, len(asked[-50:]))):
                    await asyncio.to_thread(fake.redeliver, again)  # the same MESSAGE_CREATE delivered twice
            await asyncio.sleep(pace)
            if number == WARM_UP:  # caches, the embedding model's buffers and the like are warm by now
                rss_start, warm_total = _rss_mb(), len(asked) + len(plain)
        for target in rng.sample(plain, min(EDIT_STORM, len(plain))):  # an edit storm, some into mentions
            into_mention = rng.random() < 0.3
            await asyncio.to_thread(fake.edit_message, target, f"edited {target}", into_mention)
            if into_mention:
                edited_into_mentions.append(target)
        sentinel = await asyncio.to_thread(
            fake.send_message, "sentinel: still there?", 9999, "sentinel", mention_bot=True
        )
        deadline = time.monotonic() + 300
        while not fake.replies_to(sentinel) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.to_thread(runtime.ingestion.flush, 120)
        seconds = time.monotonic() - started
        rss_end = _rss_mb()
        watcher.cancel()
        reacted = {m for m, emoji in fake.reactions if emoji == COOLDOWN_REACTION}
        busy_lines = set(runtime.persona.busy_lines) | {
            runtime.persona.busy(i) for i in range(len(runtime.persona.busy_lines))
        }
        answered = declined_busy = declined_cooldown = lost = duplicated = 0
        for message in asked:
            replies = fake.replies_to(message)
            if len(replies) > 1:
                duplicated += 1
            if replies and replies[0].content in busy_lines:
                declined_busy += 1
            elif replies:
                answered += 1
            elif message in reacted:
                declined_cooldown += 1
            else:
                lost += 1
        stored = {m.id for m in runtime.store.iter_messages()}
        total = len(asked) + len(plain)
        result = {
            "seconds": seconds,
            "messages": total + len(edited_into_mentions),
            "mentions": len(asked),
            "ordinary": len(plain),
            "answered": answered,
            "declined_busy": declined_busy,
            "declined_cooldown": declined_cooldown,
            "lost": lost,
            "duplicated": duplicated,
            "answered_edits": sum(bool(fake.replies_to(m)) for m in edited_into_mentions),
            "edits": min(EDIT_STORM, len(plain)),
            "stored_missing": len([m for m in [*asked, *plain] if m not in stored]),
            "reconnects": fake.resumes,
            "peak_rss_mb": peak_rss_mb(),
            "rss_growth_mb_per_1000": (rss_end - rss_start) / max(total - warm_total, 1) * 1000 if rss_start else 0.0,
            "loop_lag_p99_ms": percentile(lags, 99) * 1000,
            "loop_lag_max_ms": max(lags, default=0.0) * 1000,
        }
        await bot.close()
        await asyncio.gather(task, return_exceptions=True)
        runtime.close()
    fake.stop()
    return result


def run(out: Path, mentions: int = MENTIONS, ordinary: int = ORDINARY, pace: float = 0.02) -> dict:
    result = asyncio.run(_measure(mentions, ordinary, pace))
    out.mkdir(parents=True, exist_ok=True)
    (out / "soak.json").write_text(
        json.dumps({"machine": describe(), "at": time.strftime("%Y-%m-%d %H:%M"), **result}, indent=2)
    )
    return result


def report(r: dict) -> str:
    return "\n".join(
        [
            f"# Soak: {r['mentions']:,} mentions and {r['ordinary']:,} ordinary messages from {MEMBERS} members "
            f"in {r['seconds']:.0f} s",
            f"machine      {describe()}",
            f"mentions     {r['answered']:,} answered, {r['declined_busy']:,} declined with the busy line, "
            f"{r['declined_cooldown']:,} with the cooldown reaction; "
            f"lost {r['lost']}, answered twice {r['duplicated']}",
            f"edits        {r['edits']} (some into mentions): {r['answered_edits']} answered (must be 0)",
            f"store        {r['stored_missing']} messages missing (must be 0); "
            f"{r['reconnects']} reconnects with replayed events",
            f"memory       peak RSS {r['peak_rss_mb']:,.0f} MB, growth {r['rss_growth_mb_per_1000']:.1f} MB "
            f"per 1,000 messages after the first {WARM_UP:,}",
            f"event loop   lag P99 {r['loop_lag_p99_ms']:.1f} ms, max {r['loop_lag_max_ms']:.0f} ms "
            "(embedded Chroma's writes hold the GIL for 30-45 ms each)",
        ]
    )
