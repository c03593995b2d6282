"""The lore index over a real embedded Chroma with the packaged embedding model."""

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from chains.retrieve import LoreRetrieval, llama_index_search
from indexes.build import ensure_index
from indexes.filters import Filters
from indexes.importer import import_exports
from indexes.records import StoredMessage
from indexes.vector import IndexUnavailable, LoreIndex, RetrievalWeights, WeightedRetriever, chroma_client

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 24, tzinfo=timezone.utc)


def lore_index(store, tmp_path, embed_model):
    return LoreIndex(store, chroma_client(tmp_path / "chroma"), embed_model)


def message(i, content, days_ago, reactions=0, pinned=False):
    return StoredMessage(
        id=i,
        channel_id=1,
        author_id=10 + i,
        author_name=f"user{i}",
        timestamp=NOW - timedelta(days=days_ago),
        content=content,
        reactions={"👍": reactions} if reactions else {},
        is_pinned=pinned,
    )


def test_sample_server_is_imported_and_the_cursed_cartridge_is_found(store, tmp_path, embed_model):
    index = lore_index(store, tmp_path, embed_model)
    assert ensure_index(store, index, ROOT / "data" / "sample" / "export.json")
    assert store.count() > 150 and index.size() == sum(map(index.indexable, store.iter_messages()))
    assert index.size() < store.count()  # "lol" and "gg" stay out of the index
    retriever = WeightedRetriever(index, RetrievalWeights(), top_k=5, candidates=20, now=NOW)
    hits = llama_index_search(retriever)("what's the lore about the cursed cartridge?")
    assert any("Cursed Cartridge, what we know" in h.content for h in hits)
    assert all({"similarity", "recency", "engagement", "final"} <= h.scores.keys() for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert not ensure_index(store, index, ROOT / "data" / "sample" / "export.json")  # second start: nothing to do


def test_equal_similarity_recent_and_engaged_message_wins(store, tmp_path, embed_model):
    text = "the tavern meetup is in ghent this summer"
    store.upsert([message(1, text, days_ago=900), message(2, text, days_ago=3, reactions=12)])
    index = lore_index(store, tmp_path, embed_model)
    index.rebuild()
    hits = WeightedRetriever(index, RetrievalWeights(), top_k=2, now=NOW).retrieve("meetup in ghent")
    assert [h.node.metadata["message_id"] for h in hits] == ["2", "1"]
    assert hits[0].node.metadata["scores"]["similarity"] == pytest.approx(
        hits[1].node.metadata["scores"]["similarity"], abs=1e-3
    )


def test_weights_change_the_order(store, tmp_path, embed_model):
    store.upsert(
        [
            message(1, "kiwi holds the tetris record with 412 lines", days_ago=1000),
            message(2, "tetris is fun, I played some today", days_ago=1, reactions=30),
        ]
    )
    index = lore_index(store, tmp_path, embed_model)
    index.rebuild()

    def order(weights):
        return [
            h.node.metadata["message_id"]
            for h in WeightedRetriever(index, weights, top_k=2, now=NOW).retrieve("who holds the tetris record?")
        ]

    assert order(RetrievalWeights(w_sim=1.0, w_rec=0.0, w_eng=0.0, lore_boost=0.0)) == ["1", "2"]
    assert order(RetrievalWeights(w_sim=0.2, w_rec=0.4, w_eng=0.4, lore_boost=0.0)) == ["2", "1"]


def test_rebuild_swaps_collections_and_keeps_one(store, tmp_path, embed_model):
    store.upsert([message(1, "first message about zelda", 5)])
    index = lore_index(store, tmp_path, embed_model)
    index.rebuild()
    first = index.active_name
    store.upsert([message(2, "second message about mario", 4)])
    index.rebuild()
    assert index.active_name != first and index.size() == 2
    assert [c.name for c in index.client.list_collections()] == [index.active_name]


def test_no_index_yet_is_reported(store, tmp_path, embed_model):
    with pytest.raises(IndexUnavailable, match="no lore index"):
        lore_index(store, tmp_path, embed_model).open()


def test_lorebook_entries_are_found_by_keyword_in_recent_messages():
    from chains.types import ChatMessage
    from prompts import LorebookEntry

    book = [LorebookEntry(keys=("jar",), content="The cartridge lives in a jar.", priority=2)]
    retrieval = LoreRetrieval(None, book, scan_depth=2)
    items, _ = retrieval("what is in there?", needs_lore=False, recent=[ChatMessage("bob", "look at the jar")])
    assert [i.content for i in items] == ["The cartridge lives in a jar."]
    items, _ = retrieval(
        "hello", needs_lore=False, recent=[ChatMessage("bob", "jar"), ChatMessage("a", "x"), ChatMessage("b", "y")]
    )
    assert items == []


def test_import_skips_bots_system_and_commands(store):
    sample = ROOT / "data" / "sample" / "export.json"
    report = import_exports(store, sample, Filters(), progress=False)
    assert report.skipped["bot"] == 2 and report.skipped["system"] >= 5 and report.skipped["command"] == 1
    again = import_exports(store, sample, Filters(), progress=False)
    assert store.count() == report.total("new") == again.total("duplicates")  # idempotent by message id
    assert again.total("new") == again.total("updated") == 0
    pinned = [m for m in store.iter_messages() if m.is_pinned]
    assert pinned and all("pinned" in m.lore_reasons for m in pinned)
