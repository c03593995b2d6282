"""Backfill through the real discord.py client against the local fake Discord."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from app.backfill import BackfillError, backfill, point_discord_at
from config.settings import load_settings
from fakes.discord_server import TOKEN, FakeDiscord
from fakes.polling import wait_until
from indexes.store import MessageStore

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def fake():
    server = FakeDiscord().start()
    yield server
    server.stop()
    point_discord_at("https://discord.com/api/v10")


def backfill_settings(fake, tmp_path, **overrides):
    values = dict(
        DATA_DIR=tmp_path / "data",
        DISCORD_BOT_TOKEN=TOKEN,
        DISCORD_CHANNEL_ID=fake.channel_id,
        DISCORD_API_BASE=fake.api_base,
        REQUESTS_PER_SECOND=50,
    )
    return load_settings(**{**values, **overrides})


def kept_ids(fake):
    return {int(m["id"]) for m in fake.history if not m["author"]["bot"] and m["type"] in (0, 19)}


@pytest.mark.slow
def test_backfill_killed_with_sigkill_resumes_and_stores_every_message_once(fake, tmp_path):
    fake.add_history(1050, bots_every=9, joins_every=25)
    fake.page_delay = 0.3
    env = {
        **os.environ,
        "DATA_DIR": str(tmp_path / "data"),
        "DISCORD_BOT_TOKEN": TOKEN,
        "DISCORD_CHANNEL_ID": str(fake.channel_id),
        "DISCORD_API_BASE": fake.api_base,
        "REQUESTS_PER_SECOND": "50",
    }
    command = [sys.executable, "-m", "app", "backfill"]
    first = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_until(lambda: fake.pages_served() >= 4, 120, 0.02, gives_up=lambda: first.poll() is not None)
    first.send_signal(signal.SIGKILL)
    first.wait(30)
    assert first.returncode == -signal.SIGKILL

    store = MessageStore(tmp_path / "data" / "messages.sqlite3")
    checkpoint = int(store.get_meta(f"backfill:{fake.channel_id}:after") or 0)
    stored_before = {m.id for m in store.iter_messages()}
    store.close()
    assert checkpoint and stored_before and len(stored_before) < len(kept_ids(fake))
    assert max(stored_before) <= checkpoint  # the checkpoint never runs behind the stored pages

    served_before = fake.pages_served()
    fake.page_delay = 0.0
    second = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    resumed = [r for r in fake.requests if r.path.endswith("/messages")][served_before:]
    assert int(resumed[0].query["after"]) == checkpoint  # resumed, not started over
    assert len(resumed) <= 11 - 3
    assert "resumed after message" in second.stdout

    store = MessageStore(tmp_path / "data" / "messages.sqlite3")
    ids = [m.id for m in store.iter_messages()]
    assert len(ids) == len(set(ids)) and set(ids) == kept_ids(fake)  # every message exactly once
    assert store.get_meta(f"backfill:{fake.channel_id}:index_from") is None  # indexing finished
    replies = [m for m in store.iter_messages() if m.reply_to]
    assert replies and all(m.type == "Reply" for m in replies)
    assert any(m.author_display.startswith("Nick") for m in store.iter_messages())
    store.close()


async def test_backfill_in_process_then_nothing_new(fake, tmp_path):
    fake.add_history(230, bots_every=7)
    settings = backfill_settings(fake, tmp_path)
    store = MessageStore(settings.store_path)
    report = await backfill(settings, store, index=None)
    assert report.pages == 3 and report.read == 230 and report.skipped["bot"] == 32
    assert {m.id for m in store.iter_messages()} == kept_ids(fake)
    again = await backfill(settings, store, index=None)
    assert again.read == 0 and again.resumed_after == max(int(m["id"]) for m in fake.history)
    fake.add_history(5, start=__import__("datetime").datetime(2024, 1, 1, tzinfo=__import__("datetime").timezone.utc))
    assert (await backfill(settings, store, index=None)).stored == 5  # new messages since
    store.close()


async def test_backfill_skips_members_who_opted_out(fake, tmp_path):
    fake.add_history(70)
    settings = backfill_settings(fake, tmp_path)
    store = MessageStore(settings.store_path)
    store.forget(1003)
    report = await backfill(settings, store, index=None)
    assert report.skipped["opted_out"] == 10 and all(m.author_id != 1003 for m in store.iter_messages())
    store.close()


async def test_backfill_keeps_to_requests_per_second(fake, tmp_path):
    fake.add_history(450)
    settings = backfill_settings(fake, tmp_path, REQUESTS_PER_SECOND=5)
    store = MessageStore(settings.store_path)
    await backfill(settings, store, index=None)
    pages = [r.at for r in fake.requests if r.path.endswith("/messages")]
    assert len(pages) == 5
    assert min(b - a for a, b in zip(pages, pages[1:])) >= 0.15  # 5 per second: about 0.2 s apart
    store.close()


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"DISCORD_BOT_TOKEN": "wrong"}, "rejected DISCORD_BOT_TOKEN"),
        ({"DISCORD_CHANNEL_ID": 123456789012345678}, "channel 123456789012345678 not found"),
        ({"DISCORD_CHANNEL_ID": None}, "needs DISCORD_BOT_TOKEN and DISCORD_CHANNEL_ID"),
        ({"forbidden": True}, "Read Message History"),
    ],
)
async def test_backfill_errors_say_what_to_fix(fake, tmp_path, change, expected):
    fake.add_history(10)
    fake.forbidden = change.pop("forbidden", False)
    settings = backfill_settings(fake, tmp_path, **change)
    store = MessageStore(settings.store_path)
    with pytest.raises(BackfillError, match=expected) as error:
        await backfill(settings, store, index=None)
    assert TOKEN not in str(error.value)
    store.close()
