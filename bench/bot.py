"""Bot benchmark: from MESSAGE_CREATE to the first visible words and to the final text, through the fake Discord.

The real discord.py client runs the real chain on the configured engine (default: llama.cpp with
SmolLM2 on the CPU) with the sample server's lore index, against the local fake Discord of the test
suite. Members mention the character one after another in the channel, each once the previous reply
is final and the message has been indexed, so the figures are per reply, without queueing. First
visible words: the reply's first POST; final text: its last edit (or the POST when it was never
edited). Afterwards the engine alone, loaded fresh in another process, answers the very prompts the
bot sent, in order and with the same token counts: the reference for the overhead (bench.reply.raw_engine).
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from pathlib import Path

from bench.machine import describe, memory_bandwidth_gbs, peak_rss_mb, percentile
from bench.reply import BENCH_SEED, PROMPTS, engine_lines, overhead, raw_engine, record_requests, summarize_engine


async def _measure(count: int) -> dict:
    from app.backfill import point_discord_at
    from app.bot import CharacterBot, point_gateway_at
    from app.runtime import build_runtime
    from config.logs import setup_logging
    from config.settings import load_settings
    from fakes.discord_server import TOKEN, FakeDiscord

    setup_logging("WARNING")
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
            USER_COOLDOWN_SECONDS=0,
            MODEL_CACHE_DIR=Path("data/models"),
            SEED=BENCH_SEED,
        )
        runtime = build_runtime(settings)
        sent = record_requests(runtime)
        point_discord_at(settings.DISCORD_API_BASE)
        point_gateway_at(settings.DISCORD_GATEWAY_URL)
        bot = CharacterBot(runtime, settings)
        task = asyncio.create_task(bot.start(TOKEN))
        await asyncio.wait_for(bot.wait_until_ready(), 60)
        first_words, final, results = [], [], []
        original = runtime.astream

        async def keep_results(*args, **kwargs):
            async for result in original(*args, **kwargs):
                if not result.partial:
                    results.append(result)
                yield result

        runtime.astream = keep_results
        for i in range(count):
            text = PROMPTS[i % len(PROMPTS)].split(": ", 1)[1].replace("@Susu", "").strip()
            done = bot.stats.replies
            asked = await asyncio.to_thread(fake.send_message, text, 5000 + i % 7, f"member{i % 7}", mention_bot=True)
            while bot.stats.replies == done:
                await asyncio.sleep(0.005)
            (post,) = fake.replies_to(asked)
            edits = fake.edits_of(post.id)
            first_words.append(post.at - fake.sent_at[asked])
            final.append((edits[-1].at if edits else post.at) - fake.sent_at[asked])
            await asyncio.to_thread(runtime.ingestion.flush, 60)
        fallbacks = bot.stats.fallbacks
        model = runtime.model
        await bot.close()
        await asyncio.gather(task, return_exceptions=True)
        runtime.close()
        raw = raw_engine(settings, sent)
    fake.stop()
    bandwidth = memory_bandwidth_gbs()
    chain_rows = [
        {
            "tokens": r.generated_tokens,
            "prompt_tokens": r.prompt_tokens,
            "reused_tokens": r.reused_tokens,
            "decode_s": r.engine.decode_seconds if r.engine else None,
        }
        for r in results
    ]
    return {
        "replies": count,
        "model": model.describe(),
        "first_words_p50_s": percentile(first_words, 50),
        "first_words_p95_s": percentile(first_words, 95),
        "final_p50_s": percentile(final, 50),
        "final_p95_s": percentile(final, 95),
        "final_max_s": max(final),
        "raw_total_p50_s": percentile([r["total_s"] for r in raw], 50),
        "raw_total_p95_s": percentile([r["total_s"] for r in raw], 95),
        "overhead": overhead(final, [r["total_s"] for r in raw]),
        "generations": len(sent),
        "mean_generated_tokens": sum(r.generated_tokens for r in results) / max(len(results), 1),
        "fallbacks": fallbacks,
        "peak_rss_mb": peak_rss_mb(),
        "memory_bandwidth_gbs": bandwidth,
        "weight_bytes": model.weight_bytes,
        "chain_engine": summarize_engine(chain_rows, model.weight_bytes, bandwidth),
        "raw_engine": summarize_engine(raw, model.weight_bytes, bandwidth),
        "first_words_s": first_words,
        "final_s": final,
    }


def run(out: Path, count: int = 22) -> dict:
    result = asyncio.run(_measure(count))
    out.mkdir(parents=True, exist_ok=True)
    (out / "bot.json").write_text(
        json.dumps({"machine": describe(), "at": time.strftime("%Y-%m-%d %H:%M"), **result}, indent=2)
    )
    return result


def report(r: dict) -> str:
    return "\n".join(
        [
            f"# Bot replies from MESSAGE_CREATE (fake Discord on loopback), {r['replies']} mentions in one channel",
            f"machine       {describe()}",
            f"model         {r['model']}",
            f"first words   P50 {r['first_words_p50_s']:.2f} s, P95 {r['first_words_p95_s']:.2f} s "
            "(target P95 <= 0.8 s)",
            f"final text    P50 {r['final_p50_s']:.2f} s, P95 {r['final_p95_s']:.2f} s, max {r['final_max_s']:.2f} s "
            "(target P50 <= 1.0 s, P95 <= 1.5 s)",
            f"raw engine    same prompts: P50 {r['raw_total_p50_s']:.2f} s, P95 {r['raw_total_p95_s']:.2f} s",
            f"overhead      {r['overhead'] * 100:+.1f}% over the raw engine, MESSAGE_CREATE to final text "
            "against the engine's generation time "
            f"(target <= 10%; {r['generations']} generations for {r['replies']} replies)",
            f"generated     {r['mean_generated_tokens']:.1f} tokens/reply; "
            f"fallback lines {r['fallbacks']} of {r['replies']}",
            *engine_lines(r),
            f"peak RSS      {r['peak_rss_mb']:,.0f} MB",
        ]
    )
