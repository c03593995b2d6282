"""The store and the index agree after any crash: the index log, sync, check and repair, storage errors."""

import os
import signal
import sqlite3
import subprocess
import sys
import threading
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from fakes.disks import full_disk, limiting, read_only
from indexes.disk import StorageError
from indexes.filters import Filters
from indexes.live import LiveIngestion
from indexes.records import StoredMessage
from indexes.store import MessageStore
from indexes.vector import LoreIndex, RetrievalWeights, WeightedRetriever, chroma_client, content_digest

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 24, tzinfo=timezone.utc)


def message(i, content, author=7, reply_to=None):
    return StoredMessage(
        id=i,
        channel_id=1,
        author_id=author,
        author_name=f"user{author}",
        timestamp=NOW - timedelta(days=1, minutes=-i),
        content=content,
        reply_to=reply_to,
    )


def indexed_ids(index) -> set[int]:
    ids = index.client.get_collection(index.active_name).get(include=[])["ids"]
    return {int(i.split("#")[0]) for i in ids}


def logged(store) -> list[int]:
    return [message_id for _, message_id in store.index_log.changes(0, 10_000)]


@pytest.fixture
def index(store, embed_model, tmp_path):
    return LoreIndex(store, chroma_client(tmp_path / "chroma"), embed_model)


def test_every_write_is_logged_with_it_and_replies_carrying_the_words_too(store):
    question = message(1, "what is the secret ingredient of the tavern stew?")
    answer = message(2, "it is smoked paprika, every single time", reply_to=1)
    deeper = message(3, "and a pinch of salt as well, do not forget", reply_to=2)
    store.upsert([question, answer, deeper])
    assert logged(store) == [1, 2, 3]
    store.upsert([replace(answer, reactions={"👍": 2})])  # a change that keeps the words: only itself
    assert logged(store)[3:] == [2]
    store.upsert([replace(question, content="what was the secret ingredient?", edited_at=NOW)])
    assert sorted(logged(store)[4:]) == [1, 2, 3]  # the edit, and the replies embedded with its words
    store.forget(7)
    assert sorted(set(logged(store)[7:])) == [1, 2, 3]
    assert store.index_log.last_change() == len(logged(store))


def test_sync_applies_the_log_and_the_cursor_only_moves_after_chroma_has_it(store, index, monkeypatch):
    store.upsert([message(1, "the first message of the channel history")])
    index.rebuild()
    store.upsert([message(2, "a message stored while nothing was indexing")])
    assert index.pending() == 1

    def fail(collection, ids):
        raise RuntimeError("chroma went away")

    monkeypatch.setattr(index, "_rewrite", fail)
    with pytest.raises(RuntimeError):
        index.sync()
    assert index.pending() == 1  # still pending, not lost
    monkeypatch.undo()
    assert index.sync() == 1 and index.pending() == 0 and indexed_ids(index) == {1, 2}
    assert store.index_log.changes(0, 10) == []  # applied by every collection: the log is pruned


LIVE_SCRIPT = """
import os, signal, sys
sys.path.insert(0, {root!r})
from app.storage import index_place
from config.settings import load_settings
from indexes.build import open_index
from indexes.filters import Filters
from indexes.live import LiveIngestion
from indexes.records import StoredMessage
from indexes.store import MessageStore
from datetime import datetime, timezone
settings = load_settings(DATA_DIR={data!r})
store = MessageStore(settings.store_path)
index = open_index(index_place(settings), store)
if sys.argv[1] == "build":
    store.upsert([StoredMessage(id=1, channel_id=1, author_id=2, author_name="a", timestamp=datetime(2024, 1, 1, tzinfo=timezone.utc),
                                content="the channel's first message about the dragon")])
    index.rebuild()
else:
    ingest = LiveIngestion(store, index, Filters(), batch_delay=3600)  # killed before its batch is indexed
    for i in range(2, 7):
        ingest(StoredMessage(id=i, channel_id=1, author_id=2, author_name="a", timestamp=datetime(2024, 1, 1, 0, i, tzinfo=timezone.utc),
                             content=f"live message {{i}} about the dragon's hoard of gold"), seen=True)
    os.kill(os.getpid(), signal.SIGKILL)
"""  # noqa: E501


@pytest.mark.slow
def test_live_messages_stored_then_killed_are_indexed_at_the_next_start(tmp_path):
    from app.runtime import open_lore_index
    from config.settings import load_settings

    script = tmp_path / "live.py"
    script.write_text(LIVE_SCRIPT.format(root=str(ROOT), data=str(tmp_path / "data")))
    built = subprocess.run([sys.executable, str(script), "build"], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-2000:]
    killed = subprocess.run([sys.executable, str(script), "live"], capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]

    settings = load_settings(DATA_DIR=tmp_path / "data")
    store = MessageStore(settings.store_path)
    try:
        assert store.count() == 6 and store.seen(1) == 6
        index = open_lore_index(settings, store, build_if_missing=False)  # what the bot and the console do at start
        assert index.pending() == 0 and indexed_ids(index) == set(range(1, 7))
        assert index.check().agrees
    finally:
        store.close()


def test_a_message_stored_during_any_step_of_a_rebuild_reaches_the_new_index(store, index, monkeypatch):
    store.upsert([message(i, f"old message {i} about speedrun routes and glitches") for i in range(1, 60)])
    index.rebuild()
    old = index.active_name
    ingest = LiveIngestion(store, index, Filters(), batch_delay=0.0)
    added = iter(range(1000, 2000))
    embed, apply = index._embed, index._apply
    during: dict[str, list[int]] = {"scan": [], "catch-up": [], "swap": []}

    def post(step: str) -> None:
        i = next(added)
        assert ingest(message(i, f"live message {i} posted during the {step} of a rebuild"), seen=True) is None
        during[step].append(i)

    def scanning(collection, messages, progress=None):
        if collection.name != old and not during["scan"]:
            post("scan")  # stored after the new collection was registered, maybe after the scan passed it
        return embed(collection, messages, progress)

    def applying(name, collection, through=None):
        if name != old:
            if store._db.in_transaction:  # the last catch-up: a writer on another thread waits for the swap
                writer = threading.Thread(target=post, args=("swap",))
                writer.start()
                during["writer"] = writer
            elif not during["catch-up"]:
                post("catch-up")
        return apply(name, collection, through)

    monkeypatch.setattr(index, "_embed", scanning)
    monkeypatch.setattr(index, "_apply", applying)
    monkeypatch.setattr("indexes.vector.FINAL_CATCH_UP", 0)  # one catch-up round outside the transaction
    index.rebuild()
    during.pop("writer").join(30)
    monkeypatch.undo()
    assert ingest.flush(60)
    ingest.close()
    live = [i for ids in during.values() for i in ids]
    assert len(live) == 3 and all(during.values())
    assert index.active_name != old and set(live) <= indexed_ids(index)
    assert index.check().agrees and index.pending() == 0


def test_collections_never_collide_and_a_rebuild_started_later_is_left_alone(store, index, monkeypatch):
    store.upsert([message(1, "the first message of the channel history")])
    names = [store.index_log.register_collection("lore", 0) for _ in range(3)]  # in the same second, as fast as it goes
    assert len(set(names)) == 3
    numbers = [store.index_log.collections()[name][0] for name in names]
    assert numbers == sorted(numbers)
    index.client.create_collection(names[0])  # a rebuild killed earlier
    index.client.create_collection("lore-20261201031827-545578")  # one an earlier version left, killed
    index.rebuild()
    assert [c.name for c in index.client.list_collections()] == [index.active_name]
    assert list(store.index_log.collections()) == [index.active_name]
    started_later: list[str] = []
    embed = index._embed

    def another_rebuild_starts(collection, messages, progress=None):
        if not started_later:  # another process starts a rebuild while this one runs
            started_later.append(store.index_log.register_collection("lore", store.index_log.last_change()))
            index.client.create_collection(started_later[0])
        return embed(collection, messages, progress)

    monkeypatch.setattr(index, "_embed", another_rebuild_starts)
    index.rebuild()
    assert sorted(c.name for c in index.client.list_collections()) == sorted([index.active_name, started_later[0]])


def test_check_finds_what_differs_and_repair_mends_it_without_a_rebuild(store, index, tmp_path):
    store.upsert([message(i, f"message number {i} about the pinball league") for i in range(1, 8)])
    index.rebuild()
    name, before = index.active_name, index.check()
    assert before.agrees and before.indexed == 7 and before.pending == 0
    # What a bug or a hand edit can leave behind: changes the cursor has passed without applying them.
    store.upsert([message(8, "a message the index never received")])
    store.upsert([replace(message(2, "x"), content="message number 2, edited later", edited_at=NOW)])
    with store.transaction() as db:
        db.execute("DELETE FROM messages WHERE id = 3")
    store.index_log.advance(name, store.index_log.last_change())
    found = index.check()
    assert (found.missing, found.orphaned, found.stale) == ({8}, {3}, {2}) and not found.agrees
    assert "missing     1 (8)" in found.summary()
    index.repair()
    after = index.check()
    assert after.agrees and after.indexed == 7 and index.active_name == name  # mended in place
    document = index.client.get_collection(name).get(ids=["2"], include=["metadatas"])["metadatas"][0]
    assert document["digest"] == content_digest("message number 2, edited later")


def test_an_index_made_before_the_log_existed_is_adopted_and_repaired(store, index):
    store.upsert([message(1, "the first message of the channel history")])
    index.rebuild()
    store.upsert([message(2, "stored by an earlier version and killed before it was indexed")])
    with store.transaction() as db:  # what a store of an earlier version looks like
        db.execute("DELETE FROM index_log")
        db.execute("DELETE FROM index_collections")
    assert index.pending() == 0 and 2 not in indexed_ids(index)
    index.sync()
    assert index.active_name in store.index_log.collections() and indexed_ids(index) == {1, 2} and index.check().agrees


def test_a_store_that_cannot_be_written_holds_live_messages_in_order(store, index, monkeypatch):
    store.upsert([message(1, "the first message of the channel history")])
    index.rebuild()
    ingest = LiveIngestion(store, index, Filters(), batch_delay=0.0)
    upsert, full = store.upsert, threading.Event()
    full.set()

    def disk(messages, *args, **kwargs):
        if full.is_set():
            raise StorageError("cannot write messages.sqlite3: the disk is full")
        return upsert(messages, *args, **kwargs)

    monkeypatch.setattr(store, "upsert", disk)
    for i in (2, 3):
        with pytest.raises(StorageError):
            ingest(message(i, f"message {i} posted while the disk was full"), seen=True)
    assert ingest.held == 2 and store.seen(1) is None  # the catch-up after a restart would read them again
    full.clear()
    assert ingest(message(4, "message 4 posted once there was room again"), seen=True) is None
    assert ingest.held == 0 and [m.id for m in store.iter_messages()] == [1, 2, 3, 4] and store.seen(1) == 4
    assert ingest.flush(30) and indexed_ids(index) == {1, 2, 3, 4}
    ingest.close()


def test_seen_follows_discord_ids_never_dates_of_an_export(store, tmp_path):
    import json

    from indexes.importer import import_exports

    fixtures, channel = ROOT / "tests" / "fixtures" / "exports", 555000000000000001
    import_exports(store, fixtures / "Fixture Guild - tavern [555000000000000001].txt", Filters(), progress=False)
    assert store.seen(channel) is None  # ids derived from dates are a guess
    export = fixtures / "Fixture Guild - tavern [555000000000000001].json"
    import_exports(store, export, Filters(), progress=False)
    ids = {int(m["id"]) for m in json.loads(export.read_text(encoding="utf-8"))["messages"]}
    assert store.seen(channel) == max(ids & {m.id for m in store.iter_messages()})  # Discord's own ids count
    store.upsert([message(5, "older than the mark")], seen=(channel, 5))
    assert store.seen(channel) > 5  # the mark never moves back


def test_a_store_from_before_the_seen_mark_starts_from_its_newest_message_not_a_future_one(tmp_path):
    path = tmp_path / "old.sqlite3"
    now = datetime.now(timezone.utc)
    real, future = (((int(t.timestamp() * 1000) - 1_420_070_400_000) << 22) for t in (now, now + timedelta(days=365)))
    store = MessageStore(path)
    store.upsert(
        [
            replace(message(1, "read from Discord"), id=real, timestamp=now),
            replace(message(2, "a row an export dated a year ahead"), id=future, timestamp=now + timedelta(days=365)),
        ]
    )
    store.close()
    with sqlite3.connect(path) as db:
        db.execute("DROP TABLE seen")  # a store of an earlier version
    store = MessageStore(path)
    try:
        assert store.seen(1) == real
    finally:
        store.close()


def run_app(tmp_path, *args, prefix=(), limit_bytes=None):
    """`python -m app ...` as an admin runs it, after `prefix`; `limit_bytes`: files cannot grow past it."""
    env = {**os.environ, "DATA_DIR": str(tmp_path / "data"), "DISCORD_CHANNEL_ID": "555000000000000001", "ENV_FILE": ""}
    return subprocess.run(
        [*prefix, sys.executable, "-m", "app", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=limiting(limit_bytes),
    )


def snapshot(data: Path) -> dict[str, int]:
    with sqlite3.connect(f"file:{data / 'messages.sqlite3'}?mode=ro", uri=True) as db:
        return {
            "messages": db.execute("SELECT COUNT(*) FROM messages").fetchone()[0],
            "log": db.execute("SELECT COUNT(*) FROM index_log").fetchone()[0],
        }


@pytest.mark.slow
def test_a_read_only_or_full_data_dir_says_what_to_do_and_changes_nothing(tmp_path):
    fixtures = ROOT / "tests" / "fixtures" / "exports"
    first = run_app(
        tmp_path, "index", "update", "--from", str(fixtures / "Fixture Guild - tavern [555000000000000001].json")
    )
    assert first.returncode == 0, first.stderr[-2000:]
    data = tmp_path / "data"
    before = snapshot(data)
    big = tmp_path / "big [555000000000000001].csv"
    rows = [
        f'"{2000 + i}","member{i % 9}","2024-01-01T00:{i % 60:02d}:{i % 59:02d}+00:00",'
        f'"{"a long message " * 40}{i}","",""'
        for i in range(600)
    ]
    big.write_text('"AuthorID","Author","Date","Content","Attachments","Reactions"\n' + "\n".join(rows) + "\n")

    with full_disk(data, headroom=96 * 1024) as limit_bytes:
        full = run_app(tmp_path, "index", "update", "--from", str(big), limit_bytes=limit_bytes)
        assert full.returncode == 2, full.stderr[-2000:]
        assert "cannot write" in full.stderr and "Traceback" not in full.stderr
        if limit_bytes is None:  # a real small disk: ENOSPC
            assert "the disk is full: free some space" in full.stderr
        assert snapshot(data) == before
        assert run_app(tmp_path, "index", "check").returncode == 0  # store and index still agree

    with read_only(data) as prefix:
        readonly = run_app(tmp_path, "index", "update", "--from", str(big), prefix=prefix)
    assert readonly.returncode == 2, readonly.stderr[-2000:]
    assert "read-only for this process" in readonly.stderr and "Traceback" not in readonly.stderr
    assert snapshot(data) == before
    assert run_app(tmp_path, "index", "check").returncode == 0
    assert run_app(tmp_path, "index", "update", "--from", str(big)).returncode == 0  # with room again: all of it
    assert snapshot(data)["messages"] == before["messages"] + 600


@pytest.mark.slow
def test_index_update_killed_after_its_import_indexes_everything_on_the_next_run(tmp_path):
    fixtures = ROOT / "tests" / "fixtures" / "exports"
    first = run_app(
        tmp_path, "index", "update", "--from", str(fixtures / "Fixture Guild - tavern [555000000000000001].json")
    )
    assert first.returncode == 0, first.stderr[-2000:]
    killer = (
        "import os, signal, sys; sys.path.insert(0, '.'); import app.history as h; real = h.import_path\n"
        "def then_killed(*a, **k):\n"
        "    report = real(*a, **k); print(report.summary(), flush=True); os.kill(os.getpid(), signal.SIGKILL)\n"
        "h.import_path = then_killed\nfrom app.__main__ import main\nmain(sys.argv[1:])\n"
    )
    env = {**os.environ, "DATA_DIR": str(tmp_path / "data"), "DISCORD_CHANNEL_ID": "555000000000000001", "ENV_FILE": ""}
    killed = subprocess.run(
        [sys.executable, "-c", killer, "index", "update", "--from", str(fixtures)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL and "new" in killed.stdout, killed.stderr[-2000:]
    again = run_app(tmp_path, "index", "update", "--from", str(fixtures))
    assert again.returncode == 0, again.stderr[-2000:]
    assert "left pending by an earlier run, indexed" in again.stdout and ", 0 new, 0 updated," in again.stdout
    check = run_app(tmp_path, "index", "check")
    assert check.returncode == 0 and "missing     0" in check.stdout and ", 0 pending" in check.stdout, check.stdout


def test_repair_from_the_command_line(tmp_path):
    """`index check` exits 1 when store and index disagree and `--repair` mends it (in process, for speed)."""
    from app.history import check
    from app.storage import index_place
    from config.settings import load_settings
    from indexes.build import open_index

    settings = load_settings(DATA_DIR=tmp_path / "data")
    store = MessageStore(settings.store_path)
    index = open_index(index_place(settings), store)
    store.upsert([message(i, f"message number {i} about the pinball league") for i in range(1, 4)])
    index.rebuild()
    store.upsert([message(4, "a message the index never received")])
    store.index_log.advance(index.active_name, store.index_log.last_change())
    store.close()
    assert check(settings, repair=False, leftovers=False) == 1
    assert check(settings, repair=True, leftovers=False) == 0
    assert check(settings, repair=False, leftovers=False) == 0
    store = MessageStore(settings.store_path)
    retriever = WeightedRetriever(
        open_index(index_place(settings), store), RetrievalWeights(1.0, 0.0, 0.0, 0.0, 180.0, 0.0), top_k=1
    )
    assert retriever.retrieve("the message the index never received")[0].node.metadata["message_id"] == "4"
    store.close()
