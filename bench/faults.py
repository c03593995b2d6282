"""Fault benchmark: `kill -9` at random points, a full disk, a read-only DATA_DIR; nothing may be lost.

Each fault hits a real process: the bot (`python -m app bot` against the local fake Discord, killed
while members post and it stores and indexes them), `index update --from` (import, then index)
and `index rebuild --from` (import, then a whole new collection), each killed after a random delay.
After each kill the process is started again as an admin would (the bot restarts and catches up;
the command is run again) and the figures are taken from the store and the index:

- stored: messages in the store; indexed: messages in the active collection; pending: logged,
  not yet applied (0 once a process has started and finished);
- lost: messages Discord or the export holds that the store lacks, plus stored messages the
  index lacks or holds with other words (and not pending): must be 0;
- duplicated: the same message stored under two ids, or indexed in more entries than its parts:
  must be 0.

Then a full disk (a small tmpfs where the machine allows mounting one, else a file size limit) and
a read-only DATA_DIR (file modes, and no root override) during `index update` (fakes/disks.py):
the command must say what is wrong (exit 2, no traceback) and leave the store as it was.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

from bench.machine import describe

ROOT = Path(__file__).resolve().parent.parent
CHANNEL = 1300000000000000002  # the synthetic exports' channel
EXPORT_MESSAGES = 400
BURST = 40  # messages members post while the bot is killed


def _env(data: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATA_DIR": str(data),
        "LOG_DIR": str(data.parent / "logs"),
        "ENV_FILE": "",
        "LOG_LEVEL": "WARNING",
        "MODEL_CACHE_DIR": str(ROOT / "data" / "models"),
        "SEED": "1",
        **extra,
    }


def _app(env: dict[str, str], *args: str, prefix: list[str] = (), limit_bytes: int | None = None):
    from fakes.disks import limiting

    return subprocess.run(
        [*prefix, sys.executable, "-m", "app", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        preexec_fn=limiting(limit_bytes),
    )


def _killed_after(env: dict[str, str], args: list[str], delay: float) -> bool:
    """Run `python -m app ARGS` and SIGKILL it after `delay` seconds; False if it had finished by then."""
    process = subprocess.Popen(
        [sys.executable, "-m", "app", *args], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        process.wait(delay)
        return False
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait()
        return True


def _expected(export: Path) -> set[int]:
    """The ids an import of `export` keeps (the same reader and filters, into a scratch store)."""
    from app.storage import import_options
    from config.settings import load_settings
    from indexes.build import import_path
    from indexes.store import MessageStore

    with tempfile.TemporaryDirectory() as scratch:
        settings = load_settings(DATA_DIR=Path(scratch), DISCORD_CHANNEL_ID=None)
        store = MessageStore(settings.store_path)
        import_path(import_options(settings), store, export, progress=False)
        ids = {m.id for m in store.iter_messages()}
        store.close()
    return ids


def figures(data: Path, expected: set[int]) -> dict:
    """What the store and the index hold, and what of `expected` is lost or duplicated."""
    from config.settings import load_settings
    from indexes.store import MessageStore
    from indexes.vector import LoreIndex, _split, chroma_client

    settings = load_settings(DATA_DIR=data, DISCORD_CHANNEL_ID=None)
    store = MessageStore(settings.store_path)
    try:
        index = LoreIndex(
            store, chroma_client(settings.chroma_path), None, settings.CHROMA_COLLECTION, settings.INDEX_MIN_CHARS
        )
        found = index.check()
        messages = {m.id: m for m in store.iter_messages()}
        same = Counter((m.channel_id, m.author_id, m.timestamp, m.content) for m in messages.values())
        entries: Counter = Counter()
        if index.active_name:
            ids = index.client.get_collection(index.active_name).get(include=[])["ids"]
            entries.update(int(i.split("#")[0]) for i in ids)
        extra = sum(max(0, n - len(_split(messages[i].content))) for i, n in entries.items() if i in messages)
        return {
            "stored": len(messages),
            "indexed": found.indexed,
            "pending": found.pending,
            "lost": len(expected - set(messages)) + len(found.missing) + len(found.stale),
            "duplicated": sum(n - 1 for n in same.values()) + extra + len(found.orphaned),
            "leftovers": len(found.leftovers),
        }
    finally:
        store.close()


def _export(path: Path, messages: int, seed: int) -> Path:
    """A synthetic export of its own: another seed, and another time span (its ids are new)."""
    from bench.synthetic import write_export

    write_export(path, messages, seed=seed, start=datetime(2021, 1, 1, tzinfo=timezone.utc) + timedelta(minutes=seed))
    return path


def _cli_kills(kind: str, data: Path, exports: Path, kills: int, rng: random.Random, expected: set[int]) -> list[dict]:
    """`index update|rebuild --from` on a new export each round, killed at a random point, then run again."""
    env = _env(data, DISCORD_CHANNEL_ID=str(CHANNEL))
    command = ["update"] if kind == "update" else ["rebuild"]
    rows, seed = [], 1000 if kind == "update" else 2000
    export = _export(exports / f"{kind}-warmup.json", EXPORT_MESSAGES, seed)
    started = time.perf_counter()
    assert _app(env, "index", *command, "--from", str(export)).returncode == 0
    full = time.perf_counter() - started  # how long a whole run takes: kills fall inside it
    expected |= _expected(export)
    for round_ in range(kills):
        export = _export(exports / f"{kind}-{round_}.json", EXPORT_MESSAGES, seed + 1 + round_)
        expected |= _expected(export)
        delay = rng.uniform(0.25, 0.95) * full
        killed = _killed_after(env, ["index", *command, "--from", str(export)], delay)
        again = _app(env, "index", *command, "--from", str(export))  # the admin runs it again
        row = {
            "fault": f"kill -9 index {kind}",
            "at_s": round(delay, 2),
            "killed": killed,
            "restart_ok": again.returncode == 0,
            **figures(data, expected),
        }
        rows.append(row)
        print(_line(row), file=sys.stderr, flush=True)
    return rows


def _bot_kills(data: Path, kills: int, rng: random.Random) -> tuple[list[dict], set[int]]:
    """The bot killed while members post; started again, it catches up and indexes what it missed."""
    from fakes.discord_server import TOKEN, FakeDiscord
    from fakes.polling import wait_until

    fake = FakeDiscord().start()
    env = _env(
        data,
        DISCORD_BOT_TOKEN=TOKEN,
        DISCORD_GUILD_ID=str(fake.guild_id),
        DISCORD_CHANNEL_ID=str(fake.channel_id),
        DISCORD_API_BASE=fake.api_base,
        DISCORD_GATEWAY_URL=fake.gateway_url,
        LOG_LEVEL="INFO",
    )
    log = data.parent / "logs" / "bot.log"
    starts, rows, posted = 0, [], set()

    def start() -> subprocess.Popen:
        nonlocal starts
        starts += 1
        process = subprocess.Popen(
            [sys.executable, "-m", "app", "bot"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        ready = lambda: log.is_file() and log.read_text(encoding="utf-8").count("logged in as") >= starts  # noqa: E731
        if not wait_until(ready, 300, 0.1, gives_up=lambda: process.poll() is not None):
            raise RuntimeError(f"the bot did not start: see {log}")
        return process

    def stored(message_id: int) -> bool:
        try:
            with sqlite3.connect(f"file:{data / 'messages.sqlite3'}?mode=ro", uri=True, timeout=30) as db:
                return db.execute("SELECT 1 FROM messages WHERE id = ?", (message_id,)).fetchone() is not None
        except sqlite3.Error:
            return False

    def post(count: int, label: str) -> None:
        for i in range(count):
            member = rng.randrange(20)
            posted.add(
                fake.send_message(
                    f"{label} message {i}: the tavern talks about topic {i % 13}", 7000 + member, f"member{member}"
                )
            )
            time.sleep(0.02)

    try:
        for round_ in range(kills):
            process = start()
            talk = threading.Thread(target=post, args=(BURST, f"round {round_}"))
            talk.start()
            delay = rng.uniform(0.05, BURST * 0.03)
            time.sleep(delay)
            process.send_signal(signal.SIGKILL)  # mid-burst: received, maybe stored, maybe indexed
            process.wait()
            talk.join()
            process = start()  # started again: catches up with what it missed, indexes what was pending
            sentinel = fake.send_message("sentinel: back again?", 7999, "sentinel")
            posted.add(sentinel)
            wait_until(lambda s=sentinel: stored(s), 120, 0.1)
            process.send_signal(signal.SIGTERM)  # a clean stop, so that the figures can be read
            process.wait(120)
            row = {
                "fault": "kill -9 the bot",
                "at_s": round(delay, 2),
                "killed": True,
                "restart_ok": True,
                **figures(data, posted),
            }
            rows.append(row)
            print(_line(row), file=sys.stderr, flush=True)
    finally:
        fake.stop()
    return rows, posted


def _disk_faults(data: Path, exports: Path, expected: set[int]) -> list[dict]:
    """A full disk, then a read-only DATA_DIR, during `index update`; then the same run with room again."""
    from fakes.disks import full_disk, read_only

    env = _env(data, DISCORD_CHANNEL_ID=str(CHANNEL))
    rows = []
    for fault in ("full disk", "read-only DATA_DIR"):
        export = _export(exports / f"{fault.split()[0]}.json", EXPORT_MESSAGES * 4, 3000 + len(rows))
        before = figures(data, expected)
        if fault == "full disk":
            with full_disk(data, headroom=256 * 1024) as limit_bytes:
                result = _app(env, "index", "update", "--from", str(export), limit_bytes=limit_bytes)
                during = figures(data, expected)
        else:
            with read_only(data) as prefix:
                result = _app(env, "index", "update", "--from", str(export), prefix=prefix)
            during = figures(data, expected)
        told = result.returncode == 2 and "Traceback" not in result.stderr and "cannot write" in result.stderr
        expected |= _expected(export)
        again = _app(env, "index", "update", "--from", str(export))
        row = {
            "fault": fault,
            "at_s": 0.0,
            "killed": False,
            "restart_ok": again.returncode == 0,
            "told": told,
            "unchanged": during["stored"] == before["stored"],
            **figures(data, expected),
        }
        rows.append(row)
        print(_line(row), file=sys.stderr, flush=True)
    return rows


def run(out: Path, kills: int = 50, seed: int = 1234) -> dict:
    """At least `kills` kills: a fifth on the bot, the rest split between `index update` and `index rebuild`."""
    rng = random.Random(seed)
    started = time.perf_counter()
    bot_kills = max(1, kills // 5)
    update_kills = (kills - bot_kills + 1) // 2
    rebuild_kills = kills - bot_kills - update_kills
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        exports = work / "exports"
        exports.mkdir()
        rows, posted = _bot_kills(work / "bot" / "data", bot_kills, rng)
        expected: set[int] = set()
        rows += _cli_kills("update", work / "cli" / "data", exports, update_kills, rng, expected)
        rows += _cli_kills("rebuild", work / "cli" / "data", exports, rebuild_kills, rng, expected)
        rows += _disk_faults(work / "cli" / "data", exports, expected)
    result = {
        "rows": rows,
        "kills": sum(r["killed"] for r in rows),
        "lost": sum(r["lost"] for r in rows),
        "duplicated": sum(r["duplicated"] for r in rows),
        "pending_after_restart": sum(r["pending"] for r in rows),
        "restarts_failed": sum(not r["restart_ok"] for r in rows),
        "faults_told": all(r.get("told", True) and r.get("unchanged", True) for r in rows),
        "seconds": time.perf_counter() - started,
        "machine": describe(),
        "at": time.strftime("%Y-%m-%d %H:%M"),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "faults.json").write_text(json.dumps(result, indent=2))
    return result


def _line(row: dict) -> str:
    told = "" if "told" not in row else f", said what to do: {row['told']}, store unchanged: {row['unchanged']}"
    when = (
        f" at {row['at_s']:.2f} s{'' if row['killed'] else ' (had finished)'}"
        if row["fault"].startswith("kill")
        else ""
    )
    return (
        f"{row['fault']:<26}{when:<24} stored {row['stored']:>6,}  indexed {row['indexed']:>6,}  "
        f"pending {row['pending']}  lost {row['lost']}  duplicated {row['duplicated']}{told}"
    )


def report(r: dict) -> str:
    by_fault = Counter(row["fault"] for row in r["rows"] if row["killed"])
    return "\n".join(
        [
            f"# Faults: {r['kills']} kills (-9) at random points, a full disk and a read-only DATA_DIR, "
            f"in {r['seconds']:.0f} s",
            f"machine      {describe()}",
            f"kills        {', '.join(f'{kind} {n}' for kind, n in by_fault.items())}",
            *(_line(row) for row in r["rows"]),
            f"total        lost {r['lost']} (must be 0), duplicated {r['duplicated']} (must be 0), "
            f"pending after a restart {r['pending_after_restart']}, restarts that failed {r['restarts_failed']}, "
            f"disk faults told and harmless: {r['faults_told']}",
        ]
    )
