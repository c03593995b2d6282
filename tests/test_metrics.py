"""Prometheus metrics and /healthz of the real bot against the local fake Discord (METRICS_PORT)."""

import asyncio
import socket
import urllib.error
import urllib.request

from app.__main__ import main as app_main
from app.metrics import check_health
from fakes.ports import free_port
from tests.harness import until


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def sample(text: str, name: str) -> float:
    """The value of one sample line (`name` with its labels) of a Prometheus text page."""
    return next(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + " "))


async def test_metrics_count_replies_refusals_and_latency_and_healthz_follows_the_bot(start_bot, monkeypatch):
    port = free_port()
    h = await start_bot(METRICS_PORT=port, USER_COOLDOWN_SECONDS=60)
    status, text = await asyncio.to_thread(get, port, "/healthz")
    assert (status, text) == (200, "ok\n")
    _, page = await asyncio.to_thread(get, port, "/metrics")
    assert sample(page, "bot_replies_total") == 0 and sample(page, 'bot_refusals_total{reason="cooldown"}') == 0

    first = await h.say("what's the lore about the cursed cartridge?", mention_bot=True)
    await h.answered(first)
    again = await h.say("and one more thing", mention_bot=True)  # within the cooldown: a reaction
    await until(lambda: h.fake.reactions, what="the cooldown reaction")
    _, page = await asyncio.to_thread(get, port, "/metrics")
    assert sample(page, "bot_replies_total") == 1 and sample(page, "bot_fallbacks_total") == 0
    assert sample(page, "bot_reply_seconds_count") == 1 and sample(page, "bot_first_words_seconds_count") == 1
    assert sample(page, 'bot_refusals_total{reason="cooldown"}') == 1 and h.fake.reactions[0][0] == again
    assert sample(page, 'bot_refusals_total{reason="busy"}') == 0
    assert sample(page, "bot_reply_queue_depth") == 0 and sample(page, "bot_index_entries") == 0
    assert "bot_index_pending_messages" in page and "bot_generation_tokens_per_second" in page
    assert h.bot.stats.cooled_down == 1  # !stats counts the same

    # `python -m app healthcheck` (the compose file's healthcheck) asks the running bot
    monkeypatch.setenv("METRICS_PORT", str(port))
    assert await asyncio.to_thread(app_main, ["healthcheck"]) == 0

    h.bot.runtime.service.close()  # the bot cannot answer any more: unhealthy, and says why
    status, text = await asyncio.to_thread(get, port, "/healthz")
    assert status == 503 and "generation service is not running" in text
    assert await asyncio.to_thread(app_main, ["healthcheck"]) == 1

    await h.bot.close()  # stopped: nothing answers on the port
    healthy, said = await asyncio.to_thread(check_health, "127.0.0.1", port, 2.0)
    assert not healthy and "does not answer" in said


async def test_without_metrics_port_nothing_listens(start_bot, monkeypatch, capsys):
    h = await start_bot()
    assert h.bot.metrics is None and h.bot.stats.metrics is None
    monkeypatch.delenv("METRICS_PORT", raising=False)
    assert await asyncio.to_thread(app_main, ["healthcheck"]) == 2
    assert "METRICS_PORT is not set" in capsys.readouterr().err


async def test_a_metrics_port_in_use_is_a_settings_error_naming_it():
    from aiohttp import web

    from app.metrics import serve
    from config.settings import SettingsError

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        try:
            await serve(web.Application(), "127.0.0.1", port)
        except SettingsError as exc:
            assert f"METRICS_HOST=127.0.0.1 METRICS_PORT={port}" in str(exc)
        else:
            raise AssertionError("serving on a port in use did not fail")
