"""Prometheus metrics and a health check over HTTP (`METRICS_PORT`, off by default).

`GET /metrics`: replies, fallbacks, refusals by reason (a reply still pending, the cooldown, a full
queue), reply and first-words latency histograms, generation tokens/s, the reply queue's depth, the
index's size and the messages stored but not yet indexed. `GET /healthz`: 200 while the bot is
connected to Discord and its generation service runs, else 503 with the reason (the compose file's
healthcheck, through `python -m app healthcheck`). The server runs on the bot's event loop (aiohttp,
which discord.py already uses) and binds `METRICS_HOST` (127.0.0.1 unless a container publishes it).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

logger = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
REFUSALS = ("pending", "cooldown", "busy", "busy_again")  # why a message asking for a reply got none (see BotStats)


class Metrics:
    """The bot's metrics, in a registry of their own (several bots may live in one process: tests)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.replies = Counter("bot_replies", "Replies posted (the fallback line included)", registry=r)
        self.fallbacks = Counter("bot_fallbacks", "Replies that were the in-character fallback line", registry=r)
        self.refusals = Counter(
            "bot_refusals", "Messages asking for a reply that got none, by reason", ["reason"], registry=r
        )
        for reason in REFUSALS:
            self.refusals.labels(reason)  # every reason shows, at 0, from the start
        self.reply_seconds = Histogram(
            "bot_reply_seconds", "From the message to the whole reply posted", buckets=LATENCY_BUCKETS, registry=r
        )
        self.first_words_seconds = Histogram(
            "bot_first_words_seconds",
            "From the message to its reply's first words",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens_per_second = Gauge("bot_generation_tokens_per_second", "Tokens/s of the last reply", registry=r)
        self.generated_tokens = Counter("bot_generated_tokens", "Tokens generated for replies", registry=r)
        self.queue_depth = Gauge("bot_reply_queue_depth", "Replies waiting in the queue", registry=r)
        self.index_size = Gauge("bot_index_entries", "Entries in the lore index", registry=r)
        self.pending_index = Gauge("bot_index_pending_messages", "Messages stored, not yet indexed", registry=r)

    def reply(self, seconds: float, ok: bool, first_words: float | None, tokens: int, generate_seconds: float) -> None:
        self.replies.inc()
        if not ok:
            self.fallbacks.inc()
        self.reply_seconds.observe(seconds)
        if first_words is not None:
            self.first_words_seconds.observe(first_words)
        if tokens and generate_seconds:
            self.generated_tokens.inc(tokens)
            self.tokens_per_second.set(tokens / generate_seconds)

    def refused(self, reason: str) -> None:
        self.refusals.labels(reason).inc()

    def watch(self, queue_depth: Callable[[], int], index_size: Callable[[], int], pending: Callable[[], int]) -> None:
        """Gauges read when scraped: the queue, the index and the indexing backlog."""
        self.queue_depth.set_function(queue_depth)
        self.index_size.set_function(index_size)
        self.pending_index.set_function(pending)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def metrics_app(metrics: Metrics, health: Callable[[], str | None]) -> web.Application:
    """`/metrics` and `/healthz`; `health` returns None when all is well, else what is wrong."""

    async def scrape(request: web.Request) -> web.Response:
        # off the event loop: the gauges ask the index (a Chroma server, maybe slow) and the store
        body = await asyncio.to_thread(metrics.render)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(request: web.Request) -> web.Response:
        problem = health()
        return web.Response(text=f"unhealthy: {problem}\n" if problem else "ok\n", status=503 if problem else 200)

    app = web.Application()
    app.add_routes([web.get("/metrics", scrape), web.get("/healthz", healthz)])
    return app


async def serve(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Start serving `app` on host:port; the returned runner stops it (`await runner.cleanup()`).

    A port in use or an address that is not this machine's is a SettingsError naming the two settings.
    """
    from config.settings import SettingsError

    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        await runner.cleanup()
        raise SettingsError(f"cannot serve metrics on METRICS_HOST={host} METRICS_PORT={port}: {exc}") from None
    logger.info("metrics on http://%s:%d/metrics, health on /healthz", host, port)
    return runner


def check_health(host: str, port: int, timeout: float = 5.0) -> tuple[bool, str]:
    """`python -m app healthcheck`: GET /healthz of a running bot; (healthy, what it said)."""
    import urllib.error
    import urllib.request

    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::', '') else host}:{port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return True, response.read().decode().strip()
    except urllib.error.HTTPError as exc:
        return False, exc.read().decode().strip() or f"HTTP {exc.code}"
    except OSError as exc:
        return False, f"{url} does not answer: {exc}"
