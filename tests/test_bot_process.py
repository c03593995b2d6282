"""`python -m app bot` as a user starts it: the real default model, logs to logs/bot.log, no token in them;
one process on a DATA_DIR at a time; killed with SIGKILL and started again, nothing lost and nothing answered twice."""

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from fakes.discord_server import TOKEN, FakeDiscord
from fakes.polling import wait_until

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent


def bot_env(tmp_path: Path, fake: FakeDiscord, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATA_DIR": str(tmp_path / "data"),
        "LOG_DIR": str(tmp_path / "logs"),
        "DISCORD_BOT_TOKEN": TOKEN,
        "DISCORD_GUILD_ID": str(fake.guild_id),
        "DISCORD_CHANNEL_ID": str(fake.channel_id),
        "DISCORD_API_BASE": fake.api_base,
        "DISCORD_GATEWAY_URL": fake.gateway_url,
        "MODEL_CACHE_DIR": str(ROOT / "data" / "models"),
        "SEED": "1",
        "ENV_FILE": "",
        **extra,
    }


def start(env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "app", "bot"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(condition, process: subprocess.Popen, timeout: float = 240, what: str = "condition") -> None:
    if wait_until(condition, timeout, 0.1, gives_up=lambda: process.poll() is not None):
        return
    if process.poll() is not None:
        raise AssertionError(f"the bot exited while waiting for {what}: {process.stderr.read()[-3000:]}")
    raise AssertionError(f"timed out waiting for {what}")


def logged_in(env: dict[str, str], times: int = 1):
    """A condition: the bot has logged `times` on_ready lines ("logged in as ...") in its log."""
    log = Path(env["LOG_DIR"]) / "bot.log"
    return lambda: log.is_file() and log.read_text(encoding="utf-8").count("logged in as Susu") >= times


def stop(process: subprocess.Popen) -> str:
    process.send_signal(signal.SIGINT)
    try:
        _, stderr = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        _, stderr = process.communicate()
    return stderr


def stored_ids(env: dict[str, str]) -> set[int]:
    path = Path(env["DATA_DIR"]) / "messages.sqlite3"
    if not path.is_file():
        return set()
    with sqlite3.connect(path, timeout=30) as db:
        return {row[0] for row in db.execute("SELECT id FROM messages")}


def test_the_bot_process_answers_and_never_logs_the_token(tmp_path):
    fake = FakeDiscord().start()
    env = bot_env(tmp_path, fake, LOG_LEVEL="DEBUG")
    process = start(env)
    try:
        wait_for(logged_in(env), process, what="the bot ready")
        asked = fake.send_message("what's the lore about the cursed cartridge?", mention_bot=True)
        wait_for(lambda: fake.replies_to(asked), process, what="the reply")
        (post,) = fake.replies_to(asked)
        assert post.content.strip() and post.body["allowed_mentions"]["parse"] == []
    finally:
        stderr = stop(process)
        fake.stop()
    log = (tmp_path / "logs" / "bot.log").read_text(encoding="utf-8")
    assert "logged in as Susu" in log and "DEBUG" in log
    assert TOKEN not in log and TOKEN not in stderr


def test_the_bot_refuses_to_start_without_its_settings(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISCORD_")}
    env.update(DATA_DIR=str(tmp_path / "data"), LOG_DIR=str(tmp_path / "logs"), ENV_FILE="")
    result = subprocess.run(
        [sys.executable, "-m", "app", "bot"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert "DISCORD_BOT_TOKEN" in result.stderr and "Reset Token" in result.stderr


def app(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "app", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def test_a_second_process_on_the_same_data_dir_is_refused_while_the_bot_runs(tmp_path):
    fake = FakeDiscord().start()
    env = bot_env(tmp_path, fake)
    process = start(env)
    try:
        wait_for(logged_in(env), process, what="the bot ready")
        forget = app(env, "forget", "1001")
        assert (
            forget.returncode == 2 and f"the bot (pid {process.pid}" in forget.stderr and "!forgetme" in forget.stderr
        )
        rebuild = app(env, "index", "rebuild")
        assert rebuild.returncode == 2 and "CHROMA_HOST" in rebuild.stderr
        assert app(env, "index", "stats").returncode == 0  # reading is safe
    finally:
        stop(process)
        fake.stop()
    assert app(env, "forget", "1001").returncode == 0  # once the bot is gone


def test_killed_mid_reply_and_mid_ingestion_then_started_again_nothing_is_lost_or_answered_twice(tmp_path):
    fake = FakeDiscord().start()
    env = bot_env(tmp_path, fake)
    process = start(env)
    try:
        wait_for(logged_in(env), process, what="the bot ready")
        asked = fake.send_message("tell me the whole legend of the cursed cartridge", mention_bot=True)
        wait_for(lambda: fake.replies_to(asked), process, what="the first words of the reply")
        burst = [fake.send_message(f"chatter number {i} while the character is answering") for i in range(10)]
        process.send_signal(signal.SIGKILL)  # in the middle of the reply and of ingesting the burst
        process.wait(30)
        while_down = [fake.send_message(f"said while the bot was down, number {i}") for i in range(3)]
        process = start(env)
        wait_for(logged_in(env, times=2), process, what="the bot ready again")
        sentinel = fake.send_message("are you back?", author_id=1002, name="bob", mention_bot=True)
        wait_for(lambda: fake.replies_to(sentinel), process, what="the reply after the restart")
        wanted = {asked, *burst, *while_down, sentinel}
        wait_for(lambda: wanted <= stored_ids(env), process, timeout=120, what="every message in the store")
    finally:
        stop(process)
        fake.stop()
    assert len(fake.replies_to(asked)) == 1  # not answered again after the restart
    assert not any(fake.replies_to(m) for m in [*burst, *while_down])


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_an_inherited_ignored_sigint_stop_the_bot_cleanly(tmp_path, stop_signal):
    """`docker stop` sends SIGTERM; a shell without job control starts background jobs with SIGINT ignored."""
    fake = FakeDiscord().start()
    env = bot_env(tmp_path, fake)
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "bot"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:
        wait_for(logged_in(env), process, what="the bot ready")
        process.send_signal(stop_signal)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        fake.stop()
    assert process.returncode == 0, stderr[-2000:]
    log = (tmp_path / "logs" / "bot.log").read_text(encoding="utf-8")
    assert f"{signal.Signals(stop_signal).name} received: closing" in log


def test_a_member_posting_during_the_catch_up_cannot_make_the_next_one_skip_what_was_missed(tmp_path):
    """Killed again while catching up, after a live message was stored: the next start still reads what was missed."""
    fake = FakeDiscord().start()
    env = bot_env(tmp_path, fake)
    process = start(env)
    try:
        wait_for(logged_in(env), process, what="the bot ready")
        first = fake.send_message("the first message, read live")
        wait_for(lambda: first in stored_ids(env), process, what="the live message stored")
        process.send_signal(signal.SIGKILL)
        process.wait(30)
        missed = [fake.send_message(f"said while the bot was down, number {i}") for i in range(5)]
        fake.page_delay = 5.0  # the catch-up's history read is slow: a member posts meanwhile
        process = start(env)
        wait_for(logged_in(env, times=2), process, what="the bot ready again")
        live = fake.send_message("posted while the bot was catching up")
        wait_for(lambda: live in stored_ids(env), process, what="the live message stored")
        process.send_signal(signal.SIGKILL)  # before the catch-up has read the history
        process.wait(30)
        assert not set(missed) & stored_ids(env)
        fake.page_delay = 0.0
        process = start(env)
        wait_for(logged_in(env, times=3), process, what="the bot ready a third time")
        wait_for(lambda: set(missed) <= stored_ids(env), process, timeout=60, what="the missed messages stored")
    finally:
        stop(process)
        fake.stop()
