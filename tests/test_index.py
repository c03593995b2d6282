"""The lore index: Chroma server mode, atomic rebuilds, live ingestion during a rebuild, forgetting."""

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from chains.retrieve import llama_index_search
from fakes.polling import wait_until
from fakes.ports import free_port
from indexes.filters import Filters
from indexes.forget import forget_member
from indexes.importer import import_exports
from indexes.live import LiveIngestion
from indexes.records import StoredMessage
from indexes.store import MessageStore
from indexes.vector import LoreIndex, RetrievalWeights, WeightedRetriever, build_embedding, chroma_client

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample" / "export.json"
NOW = datetime(2026, 11, 24, tzinfo=timezone.utc)


def message(i, content, author=7, days_ago=1):
    return StoredMessage(
        id=i,
        channel_id=1,
        author_id=author,
        author_name=f"user{author}",
        timestamp=NOW - timedelta(days=days_ago),
        content=content,
    )


@pytest.fixture
def chroma_server(tmp_path):
    binary = shutil.which("chroma") or str(Path(sys.executable).parent / "chroma")
    port = free_port()
    process = subprocess.Popen(
        [binary, "run", "--path", str(tmp_path / "server"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def accepts() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            return False

    if not wait_until(accepts, 60, 0.2):
        process.kill()
        pytest.fail("chroma run did not start")
    yield port
    process.terminate()
    process.wait(20)


def test_index_and_query_through_a_real_chroma_server(store, chroma_server, embed_model, tmp_path):
    import_exports(store, SAMPLE, Filters(), progress=False)
    client = chroma_client(tmp_path / "unused", host="127.0.0.1", port=chroma_server)
    index = LoreIndex(store, client, embed_model)
    assert index.rebuild() == sum(map(index.indexable, store.iter_messages()))
    hits = WeightedRetriever(index, RetrievalWeights(), top_k=3, now=NOW).retrieve(
        "what do we know about the cursed cartridge?"
    )
    assert any("cursed cartridge" in h.node.get_content().lower() for h in hits)
    assert not (tmp_path / "unused").exists()  # nothing embedded on disk: the server holds it
    store.upsert([message(1, "the server mode indexes live messages too", days_ago=0)])
    assert index.pending() == 1 and index.sync() == 1 and index.pending() == 0
    assert index.size() == client.get_collection(index.active_name).count()
    assert index.check().agrees


def test_a_crash_mid_rebuild_leaves_the_previous_index_working(store, embed_model, tmp_path, monkeypatch):
    store.upsert([message(i, f"message number {i} about the arcade high scores") for i in range(1, 40)])
    index = LoreIndex(store, chroma_client(tmp_path / "chroma"), embed_model)
    index.rebuild()
    before, size = index.active_name, index.size()

    from llama_index.vector_stores.chroma import ChromaVectorStore

    calls = {"n": 0}
    original = ChromaVectorStore.add

    def crash_after_first_batch(self, nodes, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("killed mid-rebuild")
        return original(self, nodes, **kwargs)

    monkeypatch.setattr("indexes.vector.INDEX_BATCH", 10)
    monkeypatch.setattr(ChromaVectorStore, "add", crash_after_first_batch)
    with pytest.raises(KeyboardInterrupt):
        index.rebuild()
    monkeypatch.undo()
    assert index.active_name == before and index.size() == size
    assert [c.name for c in index.client.list_collections()] == [before]  # the half-built one is gone
    hits = WeightedRetriever(index, RetrievalWeights(), top_k=3, now=NOW).retrieve("arcade high scores")
    assert len(hits) == 3


def test_a_killed_rebuild_process_leaves_the_previous_index_working(tmp_path):
    """SIGKILL cannot be caught: the pointer swap is the commit point, so the old index stays."""
    script = f"""
import os, signal, sys
sys.path.insert(0, {str(ROOT)!r})
from pathlib import Path
from indexes.store import MessageStore
from indexes.vector import LoreIndex, build_embedding, chroma_client
import indexes.vector as vector
store = MessageStore(Path({str(tmp_path)!r}) / "messages.sqlite3")
index = LoreIndex(store, chroma_client(Path({str(tmp_path)!r}) / "chroma"), build_embedding())
if sys.argv[1] == "first":
    from indexes.records import StoredMessage
    from datetime import datetime, timezone
    store.upsert([StoredMessage(id=i, channel_id=1, author_id=2, author_name="a", timestamp=datetime(2024, 1, 1, tzinfo=timezone.utc), content=f"the pizza oven story number {{i}}") for i in range(1, 30)])
    index.rebuild()
    print(index.active_name)
else:
    vector.INDEX_BATCH = 5
    index.rebuild(progress=lambda done: os.kill(os.getpid(), signal.SIGKILL) if done >= 10 else None)
"""  # noqa: E501
    path = tmp_path / "rebuild.py"
    path.write_text(script)
    first = subprocess.run([sys.executable, str(path), "first"], capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    active = first.stdout.strip().splitlines()[-1]
    killed = subprocess.run([sys.executable, str(path), "second"], capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9
    store = MessageStore(tmp_path / "messages.sqlite3")
    index = LoreIndex(store, chroma_client(tmp_path / "chroma"), build_embedding())
    assert index.active_name == active and index.size() == 29
    assert WeightedRetriever(index, RetrievalWeights(), top_k=2, now=NOW).retrieve("pizza oven")
    index.rebuild()  # the next rebuild works and clears the leftover collection
    assert [c.name for c in index.client.list_collections()] == [index.active_name]
    store.close()


def test_live_ingestion_during_a_rebuild_loses_nothing(store, embed_model, tmp_path, monkeypatch):
    store.upsert([message(i, f"old message {i} about speedrun routes and glitches") for i in range(1, 200)])
    index = LoreIndex(store, chroma_client(tmp_path / "chroma"), embed_model)
    index.rebuild()
    ingest = LiveIngestion(store, index, Filters(), batch_delay=0.05)
    monkeypatch.setattr("indexes.vector.INDEX_BATCH", 16)
    done = threading.Event()
    live_ids, refused = [], []

    def chat():
        i = 1000
        while not done.is_set() or i < 1010:
            reason = ingest(message(i, f"live message {i} posted while the index was rebuilt", days_ago=0))
            (refused if reason else live_ids).append((i, reason) if reason else i)
            i += 1
            time.sleep(0.02)

    talker = threading.Thread(target=chat)
    talker.start()
    index.rebuild()
    done.set()
    talker.join()
    assert ingest.flush(60)
    ingest.close()
    collection = index.client.get_collection(index.active_name)
    indexed = set(collection.get(include=[])["ids"])
    assert refused == [] and len(live_ids) >= 10
    assert {str(i) for i in live_ids} <= indexed  # every live message reached the new index
    assert len(indexed) == store.count() == 199 + len(live_ids)


def test_a_rebuild_ends_even_when_writers_outpace_its_catch_up(store, embed_model, tmp_path, monkeypatch):
    from indexes import vector

    store.upsert([message(i, f"old message {i} about speedrun routes and glitches") for i in range(1, 50)])
    index = LoreIndex(store, chroma_client(tmp_path / "chroma"), embed_model)
    monkeypatch.setattr(vector, "SYNC_BATCH", 8)
    monkeypatch.setattr(vector, "FINAL_CATCH_UP", 4)
    embed, rewrite, posted = index._embed, index._rewrite, iter(range(1000, 5000))

    def post(count: int) -> None:
        if not store.db.in_transaction:  # writers wait while the rebuild holds the store for its last step
            store.upsert(
                [
                    message(next(posted), "live message posted while the index was rebuilt", days_ago=0)
                    for _ in range(count)
                ]
            )

    def filled(collection, messages, progress=None):
        count = embed(collection, messages, progress)
        if not hasattr(filled, "done"):  # the first fill, the new collection's: posted meanwhile, 20 to catch up
            filled.done = post(20)
        return count

    def outpaced(collection, ids):  # each batch applied, writers have posted as many meanwhile
        post(len(ids))
        rewrite(collection, ids)

    monkeypatch.setattr(index, "_embed", filled)
    monkeypatch.setattr(index, "_rewrite", outpaced)
    index.rebuild()  # without a bound on its rounds, it chases the log's end as long as writers post: forever
    indexed = set(index.client.get_collection(index.active_name).get(include=[])["ids"])
    assert indexed == {str(m.id) for m in store.iter_messages()}  # the last ones applied while writers waited
    post(20)
    assert index.sync() >= 20  # live indexing too stops at the log's end as it began (and lets a rebuild have its turn)


def count_batches(index) -> list[list[int]]:
    """Records the message ids of each batch the index rewrites."""
    batches, rewrite = [], index._rewrite

    def counting(collection, ids):
        batches.append(sorted(ids))
        return rewrite(collection, ids)

    index._rewrite = counting
    return batches


def test_live_ingestion_filters_stores_at_once_and_indexes_in_batches(store, embed_model, tmp_path):
    index = LoreIndex(store, chroma_client(tmp_path / "chroma"), embed_model)
    store.upsert([message(1, "the first message of the channel history")])
    index.rebuild()
    batches = count_batches(index)
    ingest = LiveIngestion(store, index, Filters(), batch_delay=0.3)
    assert ingest(message(2, "!play something loud")) == "command"
    bot = message(3, "I am a bot saying hello to everyone")
    bot.author_is_bot = True
    assert ingest(bot) == "bot"
    for i in range(4, 9):
        assert ingest(message(i, f"a new message {i} about the pinball machine")) is None
    assert ingest(message(4, "a new message 4 about the pinball machine")) == "unchanged"
    assert {4, 5, 6, 7, 8} <= {m.id for m in store.iter_messages()}  # stored at once
    assert ingest.flush(30)
    assert batches == [[4, 5, 6, 7, 8]] and index.size() == 6  # one embedding batch for the burst
    store.forget(7)
    assert ingest(message(9, "this member has opted out meanwhile")) == "opted_out"
    ingest.close()


def test_live_indexing_waits_while_a_reply_is_generating(store, embed_model, tmp_path):
    index = LoreIndex(store, chroma_client(tmp_path / "chroma"), embed_model)
    store.upsert([message(1, "the first message of the channel history")])
    index.rebuild()
    replying = threading.Event()
    replying.set()
    asked = threading.Event()

    def wait_for_replies(timeout):
        asked.set()
        return wait_until(lambda: not replying.is_set(), timeout)

    ingest = LiveIngestion(store, index, Filters(), wait_for_replies=wait_for_replies, batch_delay=0.0)
    assert ingest(message(2, "a message posted while the character is answering")) is None
    assert asked.wait(10)  # the indexer is holding its batch until the reply is done
    assert index.size() == 1 and ingest.waiting == 1 and not ingest.flush(0.01)
    replying.clear()
    assert ingest.flush(30) and index.size() == 2
    ingest.close()


def test_a_member_who_opts_out_before_indexing_is_left_out(store, embed_model, tmp_path):
    index = LoreIndex(store, chroma_client(tmp_path / "chroma"), embed_model)
    store.upsert([message(1, "the first message of the channel history")])
    index.rebuild()
    ingest = LiveIngestion(store, index, Filters(), batch_delay=0.3)
    assert ingest(message(2, "a message by a member who will opt out", author=9)) is None
    forget_member(store, index, tmp_path, 9)
    assert ingest.flush(30) and index.size() == 1
    ingest.close()


def test_forget_removes_a_member_everywhere(store, embed_model, tmp_path):
    import_exports(store, SAMPLE, Filters(), progress=False)
    index = LoreIndex(store, chroma_client(tmp_path / "chroma"), embed_model)
    index.rebuild()
    member = next(m.author_id for m in store.iter_messages() if m.author_name == "kiwi")
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    samples = [
        {"messages": [], "author_ids": [member, 5]},
        {"messages": [], "author_ids": [5]},
        {"messages": [], "author_ids": [str(member)]},
    ]
    (data_dir / "training_data.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    report = forget_member(store, index, data_dir, member)
    assert report.messages > 10 and report.indexed > 0 and report.samples == {"training_data.jsonl": 2}
    assert all(m.author_id != member for m in store.iter_messages())
    collection = index.client.get_collection(index.active_name)
    assert collection.get(where={"author_id": str(member)}, include=[])["ids"] == []
    assert [json.loads(line)["author_ids"] for line in (data_dir / "training_data.jsonl").read_text().splitlines()] == [
        [5]
    ]
    assert store.opted_out() == {member}  # by Discord id only: a name can be anyone's nickname
    kiwi = forget_member(store, index, data_dir, member, names=["kiwi"])  # an admin names them
    assert kiwi.names == ("kiwi",) and len(store.opted_out()) == 2
    assert store.opted_out_members() == 1  # one member, however many ids
    import_exports(store, SAMPLE, Filters(opted_out=frozenset(store.opted_out())), progress=False)
    assert all(m.author_id != member for m in store.iter_messages())  # not collected again
    index.rebuild()
    assert index.client.get_collection(index.active_name).get(where={"author_id": str(member)}, include=[])["ids"] == []


def test_a_store_from_before_per_member_opt_outs_is_migrated(tmp_path):
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE opted_out (user_id INTEGER PRIMARY KEY, since TEXT NOT NULL)")
        db.executemany("INSERT INTO opted_out VALUES (?, '2024-01-01')", [(1,), (2,)])
    store = MessageStore(path)
    try:
        store.forget(3, member=1)
        assert store.opted_out() == {1, 2, 3} and store.opted_out_members() == 2
    finally:
        store.close()


def test_a_reply_is_found_by_the_thread_it_answers_and_forgetting_the_asker_unlinks_it(store, embed_model, tmp_path):
    from dataclasses import replace

    from indexes.vector import to_nodes

    question = message(1, "what unit is the rate of a collection phase in, is it in bips?", author=9)
    guess = replace(message(2, "I think it is a plain number, set 20 for twenty", author=8), reply_to=1)
    # The answer corrects the guess: it replies to the guess, not to the question.
    answer = replace(
        message(3, "it depends on the case: for model three it counts as a percent, for two as wei"), reply_to=2
    )
    banter = replace(message(4, "a rich wallet 🤑", author=8), reply_to=1)
    noise = [
        message(5 + i, text)
        for i, text in enumerate(
            [
                "gm everyone, the weather is lovely today",
                "does anyone know a good tutorial for solidity tests?",
                "the judging phase starts next week for the whole contest",
            ]
        )
    ]
    [(node, embedded)] = to_nodes(answer, 0, [question.content, guess.content])
    assert question.content in embedded and guess.content in embedded  # the thread, the question first
    assert embedded.index(question.content) < embedded.index(guess.content)
    assert node.text == "" and "replying_to" not in node.metadata  # the index holds no words: read back from the store
    [(_, alone)] = to_nodes(banter, 0, [question.content])
    assert alone == banter.content  # too short to add to the thread: not given its meaning

    store.upsert([question, guess, answer, banter, *noise])
    index = LoreIndex(store, chroma_client(tmp_path / "chroma"), embed_model)
    index.rebuild()
    collection = index.client.get_collection(index.active_name)

    def stored(message_id):
        return collection.get(ids=[str(message_id)], include=["metadatas", "embeddings"])

    linked = stored(3)
    retriever = WeightedRetriever(index, RetrievalWeights(1.0, 0.0, 0.0, 0.0, 180.0, 0.0), top_k=5)

    def answer_score():
        hits = retriever.retrieve("what unit is the rate of a collection phase in?")
        return next(hit.score for hit in hits if hit.node.metadata["message_id"] == "3")

    with_question = answer_score()
    [found] = [i for i in llama_index_search(retriever)("what unit is the rate?") if i.content == answer.content]
    assert found.thread == f"{question.content} / {guess.content}"  # grounding reads the answer in its thread
    assert found.message_ids == (3, 1, 2)  # whose words it brings: a reply made from it goes when one goes
    forget_member(store, index, tmp_path, 9)  # the asker opts out: their words leave the answer's embedding
    unlinked = stored(3)
    assert unlinked["ids"] == ["3"] and list(unlinked["embeddings"][0]) != list(linked["embeddings"][0])
    [found] = [i for i in llama_index_search(retriever)("what unit is the rate?") if i.content == answer.content]
    assert found.thread == guess.content and found.message_ids == (3, 2)
    assert with_question > answer_score() + 0.05  # the question is what made the answer findable


def test_a_long_post_is_indexed_in_parts_and_found_by_one_of_its_lines(store, embed_model, tmp_path):
    from dataclasses import replace

    awards = "Awards for the spring contest:\n\n" + "\n".join(
        f"${5000 - 37 * n:,}.{n:02d} USDC » @warden{n}" for n in range(60)
    )
    summary = (
        "\n\nFindings summary\n----------\nHigh risk findings: 4 unique (303 total)\n"
        "Medium risk findings: 10 unique (183 total)\nGas reports: 19\nQA reports: 29"
    )
    post = message(1, awards + summary, author=3)
    noise = [
        message(2 + i, text)
        for i, text in enumerate(
            [
                "gm everyone, the weather is lovely today",
                "does anyone know a good tutorial for solidity tests?",
                "the judging phase starts next week for the whole contest",
                "how many reports did you submit in total?",
            ]
        )
    ]
    store.upsert([post, *noise])
    index = LoreIndex(store, chroma_client(tmp_path / "chroma"), embed_model)
    assert index.rebuild() == 5 and index.size() == 5  # a post in parts is still one message
    collection = index.client.get_collection(index.active_name)
    parts = collection.get(where={"message_id": "1"}, include=["metadatas", "documents"])
    assert len(parts["ids"]) > 2 and "1" in parts["ids"]

    retriever = WeightedRetriever(index, RetrievalWeights(1.0, 0.0, 0.0, 0.0, 180.0, 0.0), top_k=3)
    hits = retriever.retrieve("how many high and medium risk findings were there?")
    [found] = [hit for hit in hits if hit.node.metadata["message_id"] == "1"]  # one part per message
    assert "High risk findings: 4 unique" in found.node.get_content()  # the part that says it, not the list

    edited = replace(post, content="Awards for the spring contest will be posted soon.", edited_at=NOW)
    store.upsert([edited])
    index.sync()
    assert collection.get(where={"message_id": "1"}, include=[])["ids"] == ["1"]  # no part of the old text left
    store.upsert([replace(post, edited_at=NOW + timedelta(minutes=1))])
    index.sync()
    assert len(collection.get(where={"message_id": "1"}, include=[])["ids"]) == len(parts["ids"])
    assert forget_member(store, index, tmp_path, 3).indexed == 1  # every part goes, counted as one message
    assert index.client.get_collection(index.active_name).get(where={"message_id": "1"}, include=[])["ids"] == []


def test_the_index_holds_no_words_and_never_returns_a_message_the_store_no_longer_has(store, embed_model, tmp_path):
    from dataclasses import replace

    question = message(1, "who keeps the spare key of the arcade?", author=9)
    answer = replace(message(2, "the spare key hangs behind the pinball machine, ask kiwi"), reply_to=1)
    store.upsert([question, answer, message(3, "the weather is lovely today, let us go outside", author=8)])
    index = LoreIndex(store, chroma_client(tmp_path / "chroma"), embed_model)
    index.rebuild()
    kept = index.client.get_collection(index.active_name).get(include=["documents", "metadatas"])
    assert set(kept["documents"]) == {""}
    said = json.dumps(kept["metadatas"])
    assert "spare key" not in said and "user7" not in said and "pinball" not in said  # no words, no names
    retriever = WeightedRetriever(index, RetrievalWeights(1.0, 0.0, 0.0, 0.0, 180.0, 0.0), top_k=3)
    [hit] = [h for h in retriever.retrieve("where is the spare key?") if h.node.metadata["message_id"] == "2"]
    assert hit.node.get_content() == answer.content and hit.node.metadata["author"] == "user7"  # read back
    assert hit.node.metadata["replying_to"] == question.content
    store.delete([2])  # deleted: not yet applied to the index, yet never returned again
    assert index.pending() == 1
    assert all(h.node.metadata["message_id"] != "2" for h in retriever.retrieve("where is the spare key?"))


def _another_embedder(tmp_path: Path, name: str = "my-embedder") -> Path:
    """The packaged model's files under another folder (linked, not copied): another EMBED_MODEL to the index."""
    from indexes.vector import packaged_embedding_path

    folder = tmp_path / name
    shutil.copytree(packaged_embedding_path(), folder, copy_function=os.symlink)
    return folder


def test_an_embedding_model_is_known_by_its_files_not_where_they_lie(tmp_path):
    from indexes.vector import DEFAULT_EMBEDDER, IndexUnavailable, embedder_identity

    assert embedder_identity(DEFAULT_EMBEDDER) == DEFAULT_EMBEDDER
    here = _another_embedder(tmp_path / "a")
    moved = _another_embedder(tmp_path / "b")
    assert embedder_identity(str(here)) == embedder_identity(str(moved))
    assert embedder_identity(str(here)).startswith("my-embedder:")
    (moved / "config.json").unlink()
    (moved / "config.json").write_text((here / "config.json").read_text().replace("}", ', "note": "retrained"}', 1))
    assert embedder_identity(str(moved)) != embedder_identity(str(here))  # other weights or config: another model
    with pytest.raises(IndexUnavailable, match="hf download someone/never-downloaded"):
        embedder_identity("someone/never-downloaded")  # the hub is never reached at run time


def test_an_index_made_with_another_embedding_model_is_never_searched_and_is_rebuilt(store, embed_model, tmp_path):
    from indexes.build import IndexPlace, ensure_index, open_index
    from indexes.vector import DEFAULT_EMBEDDER, EMBEDDER_KEY, IndexUnavailable, embedder_identity

    import_exports(store, SAMPLE, Filters(), progress=False)

    def place(model: str) -> IndexPlace:
        return IndexPlace(tmp_path / "chroma", None, 8000, "lore", 10, "float32", model)

    first = open_index(place(DEFAULT_EMBEDDER), store)
    first._embed_model = embed_model  # the packaged model, already loaded by the fixture
    assert ensure_index(store, first, None) and not first.embedder_changed()
    made = first.active_name
    assert first.client.get_collection(made).metadata[EMBEDDER_KEY] == DEFAULT_EMBEDDER

    folder = _another_embedder(tmp_path)
    second = open_index(place(str(folder)), store)
    assert second.embedder == embedder_identity(str(folder)) and second.embedder_changed()
    with pytest.raises(IndexUnavailable, match="made with the embedding model all-minilm-l6-v2.*now my-embedder"):
        second.open()  # its vectors live in another model's space: searched, they would find noise
    assert ensure_index(store, second, None)  # the bot's start rebuilds it with the new model
    assert second.active_name != made and not second.embedder_changed()
    assert second.client.get_collection(second.active_name).metadata[EMBEDDER_KEY] == second.embedder
    hits = WeightedRetriever(second, RetrievalWeights(), top_k=3, now=NOW).retrieve("the cursed cartridge?")
    assert any("cursed cartridge" in h.node.get_content().lower() for h in hits)
    assert made not in {c.name for c in second.client.list_collections()}  # no other model's vectors stay

    # A command that syncs (forget, backfill, update) with EMBED_MODEL changed back: the member's messages leave
    # the store, and the index is made again with the model named, nothing of theirs in it.
    rebuilt = second.active_name
    back = open_index(place(DEFAULT_EMBEDDER), store)
    back._embed_model = embed_model
    member = next(m.author_id for m in store.iter_messages() if m.author_name == "kiwi")
    assert forget_member(store, back, tmp_path / "data", member).messages > 10
    assert not back.embedder_changed() and back.active_name != rebuilt
    collection = back.client.get_collection(back.active_name)
    assert collection.metadata[EMBEDDER_KEY] == DEFAULT_EMBEDDER
    assert collection.get(where={"author_id": str(member)}, include=[])["ids"] == []
    assert {c.name for c in back.client.list_collections()} == {back.active_name}


def test_an_embedding_model_that_is_not_here_stops_searches_not_forgetting(store, embed_model, tmp_path):
    from indexes.build import IndexPlace, open_index
    from indexes.vector import IndexUnavailable

    import_exports(store, SAMPLE, Filters(), progress=False)
    LoreIndex(store, chroma_client(tmp_path / "chroma"), embed_model).rebuild()
    place = IndexPlace(tmp_path / "chroma", None, 8000, "lore", 10, "float32", "someone/never-downloaded")
    index = open_index(place, store)  # no error yet: a command that only deletes needs no model
    member = next(m.author_id for m in store.iter_messages() if m.author_name == "kiwi")
    assert forget_member(store, index, tmp_path / "data", member).messages > 10  # the index applies it when it can
    assert all(m.author_id != member for m in store.iter_messages())
    with pytest.raises(IndexUnavailable, match="hf download someone/never-downloaded"):
        index.open()


def test_an_index_made_before_embedding_models_were_recorded_counts_as_the_packaged_ones(store, embed_model, tmp_path):
    from indexes.vector import DEFAULT_EMBEDDER, EMBEDDER_KEY

    import_exports(store, SAMPLE, Filters(), progress=False)
    legacy = LoreIndex(store, chroma_client(tmp_path / "chroma"), embed_model)  # records no model, checks none
    legacy.rebuild()
    assert EMBEDDER_KEY not in (legacy.client.get_collection(legacy.active_name).metadata or {})
    packaged = LoreIndex(store, legacy.client, embed_model, embedder=DEFAULT_EMBEDDER)
    assert not packaged.embedder_changed() and packaged.open() is not None
    assert LoreIndex(store, legacy.client, embed_model, embedder="my-embedder:0123").embedder_changed()
