"""`python -m app bot` as a user starts it: the real default model, logs to logs/bot.log, no token in them."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fake_discord import TOKEN, FakeDiscord

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent


def test_the_bot_process_answers_and_never_logs_the_token(tmp_path):
    fake = FakeDiscord().start()
    env = {
        **os.environ, "DATA_DIR": str(tmp_path / "data"), "LOG_DIR": str(tmp_path / "logs"), "DISCORD_BOT_TOKEN": TOKEN,
        "DISCORD_GUILD_ID": str(fake.guild_id), "DISCORD_CHANNEL_ID": str(fake.channel_id), "DISCORD_API_BASE": fake.api_base,
        "DISCORD_GATEWAY_URL": fake.gateway_url, "MODEL_CACHE_DIR": str(ROOT / "data" / "models"), "LOG_LEVEL": "DEBUG",
        "SEED": "1",
    }  # fmt: skip
    process = subprocess.Popen([sys.executable, "-m", "app", "bot"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while fake.identifies == 0 and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.2)
        assert fake.identifies == 1, process.stderr.read() if process.poll() is not None else "no IDENTIFY"
        time.sleep(1.0)
        asked = fake.send_message("what's the lore about the cursed cartridge?", mention_bot=True)
        while not fake.replies_to(asked) and time.monotonic() < deadline:
            time.sleep(0.1)
        (post,) = fake.replies_to(asked)
        assert post.content.strip() and post.body["allowed_mentions"]["parse"] == []
    finally:
        process.send_signal(signal.SIGINT)
        try:
            _, stderr = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            _, stderr = process.communicate()
        fake.stop()
    log = (tmp_path / "logs" / "bot.log").read_text(encoding="utf-8")
    assert "logged in as Susu" in log and "DEBUG" in log
    assert TOKEN not in log and TOKEN not in stderr


def test_the_bot_refuses_to_start_without_its_settings(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISCORD_")}
    env.update(DATA_DIR=str(tmp_path / "data"), LOG_DIR=str(tmp_path / "logs"))
    result = subprocess.run([sys.executable, "-m", "app", "bot"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "DISCORD_BOT_TOKEN" in result.stderr and "Reset Token" in result.stderr
