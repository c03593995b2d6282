"""Bot benchmark: reply latency from MESSAGE_CREATE to the reply's POST, through the fake Discord.

The real discord.py client runs the real chain on the configured model (default: SmolLM2 on the
CPU) with the sample server's lore index, against the local fake Discord of the test suite. Each
mention is sent once the previous one is answered, so the figures are per reply, without queueing.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from pathlib import Path

from bench.machine import describe, peak_rss_mb, percentile
from bench.reply import PROMPTS


async def _measure(count: int) -> dict:
    from app.bot import CharacterBot, point_gateway_at
    from app.logs import setup_logging
    from app.runtime import build_runtime
    from app.settings import load_settings
    from indexes.backfill import point_discord_at
    from tests.fake_discord import TOKEN, FakeDiscord

    setup_logging("WARNING")
    fake = FakeDiscord().start()
    with tempfile.TemporaryDirectory() as folder:
        settings = load_settings(
            DATA_DIR=Path(folder), LOG_DIR=Path(folder) / "logs", DISCORD_BOT_TOKEN=TOKEN, DISCORD_GUILD_ID=fake.guild_id,
            DISCORD_CHANNEL_ID=fake.channel_id, DISCORD_API_BASE=fake.api_base, DISCORD_GATEWAY_URL=fake.gateway_url,
            USER_COOLDOWN_SECONDS=0, MODEL_CACHE_DIR=Path("data/models"), SEED=1,
        )  # fmt: skip
        runtime = build_runtime(settings)
        point_discord_at(settings.DISCORD_API_BASE)
        point_gateway_at(settings.DISCORD_GATEWAY_URL)
        bot = CharacterBot(runtime, settings)
        task = asyncio.create_task(bot.start(TOKEN))
        await asyncio.wait_for(bot.wait_until_ready(), 60)
        latencies, fallbacks = [], 0
        for i in range(count):
            text = PROMPTS[i % len(PROMPTS)].split(": ", 1)[1].replace("@Susu", "").strip()
            asked = await asyncio.to_thread(fake.send_message, text, 5000 + i % 7, f"member{i % 7}", mention_bot=True)
            while not fake.replies_to(asked):
                await asyncio.sleep(0.005)
            post = fake.replies_to(asked)[0]
            latencies.append(post.at - fake.sent_at[asked])
        fallbacks = bot.stats.fallbacks
        model = runtime.model.describe()
        await bot.close()
        await asyncio.gather(task, return_exceptions=True)
        runtime.close()
    fake.stop()
    return {
        "replies": count, "model": model, "p50_s": percentile(latencies, 50), "p95_s": percentile(latencies, 95),
        "max_s": max(latencies), "fallbacks": fallbacks, "peak_rss_mb": peak_rss_mb(),
    }  # fmt: skip


def run(out: Path, count: int = 22) -> dict:
    result = asyncio.run(_measure(count))
    out.mkdir(parents=True, exist_ok=True)
    (out / "bot.json").write_text(json.dumps({"machine": describe(), "at": time.strftime("%Y-%m-%d %H:%M"), **result}, indent=2))
    return result


def report(r: dict) -> str:
    return "\n".join([
        f"# Bot reply latency, MESSAGE_CREATE to the reply's POST (fake Discord on loopback), {r['replies']} replies",
        f"machine      {describe()}",
        f"model        {r['model']}",
        f"latency      P50 {r['p50_s']:.2f} s, P95 {r['p95_s']:.2f} s, max {r['max_s']:.2f} s; {r['fallbacks']} fallback lines",
        f"peak RSS     {r['peak_rss_mb']:,.0f} MB",
    ])  # fmt: skip
