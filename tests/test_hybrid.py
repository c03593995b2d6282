"""Hybrid retrieval: the lexical index in the store, absolute tie-breakers, questions paired with answers, parts."""

import os
import signal
import sqlite3
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from llama_index.core.schema import NodeWithScore, TextNode

from indexes import lexical
from indexes.answers import (
    GOES_ON_MESSAGES,
    explicit_answer,
    found_answer,
    goes_on,
    likely_answer,
    not_known,
    only_asks,
    own_fix,
    reports_problem,
    tells_of_a_fix,
)
from indexes.records import StoredMessage
from indexes.vector import (
    PART_TOKENS,
    LoreIndex,
    RetrievalWeights,
    WeightedRetriever,
    _Candidate,
    _covered,
    _split,
    _split_long,
    _splitter,
    chroma_client,
    part_keys,
    thread_of,
    to_nodes,
)

NOW = datetime(2026, 11, 24, tzinfo=timezone.utc)
LLAMA_INDEX_FIELDS = {"_node_content", "_node_type", "document_id", "doc_id", "ref_doc_id"}


def message(i, content, minutes_ago=60 * 24, author=None, reactions=0, reply_to=None, private=False, channel=1):
    author_id = author if author is not None else 10 + i
    return StoredMessage(
        id=i,
        channel_id=channel,
        author_id=author_id,
        author_name=f"user{author_id}",
        timestamp=NOW - timedelta(minutes=minutes_ago),
        content=content,
        reactions={"👍": reactions} if reactions else {},
        reply_to=reply_to,
        private=private,
    )


def retrieve(store, tmp_path, embed_model, query, weights=None, top_k=3, channel_id=None):
    index = LoreIndex(store, chroma_client(tmp_path / "chroma"), embed_model)
    index.rebuild()
    retriever = WeightedRetriever(index, weights or RetrievalWeights(), top_k=top_k, now=NOW).for_channel(channel_id)
    return retriever.retrieve(query)


# The lexical index


def test_query_terms_keep_figures_and_file_names_and_drop_stopwords():
    assert lexical.query_terms("what's the deadline for NextGenCore.sol and the $60,500 pool? is it v1.2") == [
        "deadline",
        "nextgencore.sol",
        "60,500",
        "pool",
        "v1.2",
    ]
    assert lexical.fts_query(['say "hi"']) == '"say ""hi"""'  # a member's quote is never FTS5 syntax


def test_the_lexical_index_follows_inserts_edits_and_deletes(store):
    store.upsert([message(1, "the zorblax contract holds the vault"), message(2, "nothing to see here")])
    assert [m for m, _ in store.lexical_search("where is zorblax?", 5)] == [1]
    edited = message(1, "the quintar contract holds the vault")
    store.upsert([StoredMessage(**{**edited.__dict__, "edited_at": NOW})])
    assert store.lexical_search("zorblax", 5) == [] and [m for m, _ in store.lexical_search("quintar", 5)] == [1]
    store.delete([1])
    assert store.lexical_search("quintar", 5) == []


def test_a_deleted_word_leaves_the_lexical_index_in_the_file(store):
    store.upsert([message(1, "my address is 12 flibbertigibbet lane"), message(2, "an unrelated message")])
    store.scrub()
    store.delete([1])  # scrubs: the index's segments are merged, the write-ahead log truncated
    files = [store.path, store.path.with_name(store.path.name + "-wal")]
    data = b"".join(Path(f).read_bytes() for f in files if Path(f).exists())
    assert b"flibbertigibbet" not in data


def test_a_store_of_an_earlier_version_gets_its_lexical_index_when_opened(tmp_path):
    from indexes.store import MessageStore

    store = MessageStore(tmp_path / "old.sqlite3")
    store.upsert([message(1, "the glimmerstone is under the bar")])
    store.db.execute(f"DROP TABLE {lexical.FTS_TABLE}")
    for trigger in ("insert", "delete", "update"):
        store.db.execute(f"DROP TRIGGER messages_fts_{trigger}")
    store.close()
    reopened = MessageStore(tmp_path / "old.sqlite3")
    assert [m for m, _ in reopened.lexical_search("glimmerstone", 5)] == [1]
    reopened.close()


def test_lexical_search_sees_a_private_thread_only_from_inside_it(store):
    store.upsert([message(1, "the secret snorkelwax plan", private=True, channel=77)])
    assert store.lexical_search("snorkelwax", 5) == []
    assert [m for m, _ in store.lexical_search("snorkelwax", 5, channel_id=77)] == [1]


def test_chroma_filters_only_once_a_private_thread_is_stored(store, tmp_path, embed_model):
    # A filtered Chroma query costs several times an unfiltered one: without private messages there is no filter.
    store.upsert([message(1, "the zorblax vault opens on friday at noon")])
    index = LoreIndex(store, chroma_client(tmp_path / "chroma"), embed_model)
    index.rebuild()
    retriever = WeightedRetriever(index, RetrievalWeights(), top_k=3, now=NOW)
    assert not store.has_private() and retriever._where() is None
    assert [h.node.metadata["message_id"] for h in retriever.retrieve("when does the zorblax vault open?")] == ["1"]
    store.upsert([message(2, "the zorblax vault secret code is 4471", private=True, channel=77)])
    index.sync()
    assert store.has_private() and retriever._where() == {"private": False}
    found = [h.node.metadata["message_id"] for h in retriever.retrieve("what is the zorblax vault code?")]
    assert "2" not in found and "1" in found
    inside = [h.node.metadata["message_id"] for h in retriever.for_channel(77).retrieve("the zorblax vault code?")]
    assert "2" in inside


def test_a_word_in_most_of_a_large_channel_is_left_out_of_the_search_but_not_of_the_coverage(store):
    common = [message(i, f"blorp number {i} of the daily chatter") for i in range(1, 601)]
    store.upsert([*common, message(1000, "blorp and the quintar contract")])
    assert lexical.documents(store.db) == 601 and lexical.document_counts(store.db, ["blorp", "quintar"]) == {
        "blorp": 601,
        "quintar": 1,
    }
    assert store.lexical_search("where is the blorp quintar?", 5) == store.lexical_search("quintar", 5)
    assert [m for m, _ in store.lexical_search("blorp quintar", 5)] == [1000]  # "blorp" ranks nothing alone
    assert len(store.lexical_search("blorp daily chatter", 5)) == 5  # all common: the rarest is searched
    texts = {1: common[0].content, 1000: "blorp and the quintar contract"}
    held = lexical.coverage(store.lexical_query("blorp quintar"), texts)
    assert 0 < held[1] < held[1000] == 1.0  # yet a message holding it holds a part of the question


def test_a_question_of_common_words_only_searches_the_newest_messages_holding_the_rarest(store, monkeypatch):
    monkeypatch.setattr(lexical, "COMMON_SCAN", 100)
    # The oldest messages hold "blorp" twice in few words: BM25 ranks them first of all 601
    chatter = [message(i, "blorp blorp" if i <= 50 else f"blorp {i} of the daily chatter") for i in range(1, 602)]
    store.upsert(chatter)
    found = [m for m, _ in store.lexical_search("where is the blorp?", 5)]
    assert len(found) == 5 and all(m > 601 - 100 for m in found)  # not a "blorp blorp": of the 100 newest
    monkeypatch.setattr(lexical, "COMMON_SCAN", 1000)
    assert all(m <= 50 for m, _ in store.lexical_search("where is the blorp?", 5))  # all 601 ranked


def test_coverage_weighs_rare_words_and_means_the_same_in_every_query(store):
    store.upsert([message(i, f"the deploy went fine today number {i}") for i in range(1, 30)])
    store.upsert([message(40, "DeployVault.s.sol deploys the vault"), message(41, "the deploy is today")])
    asked = store.lexical_query("which script is DeployVault.s.sol, the deploy one?")
    held = lexical.coverage(asked, {40: "DeployVault.s.sol deploys the vault", 41: "the deploy is today"})
    assert held[40] > 0.8 > 0.3 > held[41] > 0


@pytest.mark.parametrize("question", ["deploying", "NextGenCore.sol", "60,500", "café", "naïve guesses", "MINTED"])
def test_the_coverage_reads_words_as_the_full_text_index_does(store, question, monkeypatch):
    # Stemmed, no diacritics, figures and dotted names as phrases: the coverage holds a word where the search finds it.
    texts = {
        1: "we deployed it yesterday",
        2: "NextGenCore.sol holds the mint",
        3: "the prize is $60,500",
        4: "the cafe opens at nine",
        5: "a naive guess",
        6: "500 of 60 minted",
        7: "NextGenCore is the old name",
    }
    store.upsert([message(i, text) for i, text in texts.items()])
    found = {message_id for message_id, _ in store.lexical_search(question, 10)}
    asked = store.lexical_query(question)
    opened: list[sqlite3.Connection] = []
    connect = sqlite3.connect
    monkeypatch.setattr(lexical.sqlite3, "connect", lambda *a, **k: opened.append(connect(*a, **k)) or opened[-1])
    held = {message_id for message_id, share in lexical.coverage(asked, texts).items() if share}
    assert found and held == found
    with pytest.raises(sqlite3.ProgrammingError):  # its scratch table is closed: no member's words stay in memory
        opened[0].execute("SELECT 1")


# Scoring


def test_the_exact_term_a_member_types_is_found_by_the_lexical_search(store, tmp_path, embed_model):
    notes = (
        "Deployment notes for tonight: we move the database to the new cluster at 22:00, the old replicas stay up "
        "until the morning, and ENABLE_FLIBBER stays on so the workers keep retrying. Dashboards will be red for a "
        "bit, that is fine. Ping me if the queue grows past ten thousand jobs."
    )
    near = ["ENABLE_FLOBBER", "ENABLE_FLUBBER", "ENABLE_FLABBER", "ENABLE_BLIBBER", "ENABLE_FLIPPER", "ENABLE_GLIBBER"]
    store.upsert([message(1, notes), *(message(10 + i, f"{name} is for the cache") for i, name in enumerate(near))])
    query = "what is ENABLE_FLIBBER for?"  # dense retrieval takes the look-alike names for it
    dense_only = retrieve(store, tmp_path, embed_model, query, RetrievalWeights(w_lex=0.0), top_k=3)
    hybrid = {h.node.metadata["message_id"]: h for h in retrieve(store, tmp_path, embed_model, query, top_k=3)}
    assert "1" in hybrid and hybrid["1"].node.metadata["scores"]["lexical"] > 0.9
    assert "1" not in [h.node.metadata["message_id"] for h in dense_only]


def test_the_message_holding_most_of_the_questions_words_takes_the_last_place(store, tmp_path, embed_model):
    summary = (
        "$3.35 USDC » alice\n$3.35 USDC » bob\n$3.35 USDC » carol\n\nFindings summary\n"
        "High risk findings: 6 unique (42 total)\nMed risk findings: 25 unique (131 total)"
    )
    nearer = [  # closer to the question by meaning, fewer of its words
        "the audit had so many interesting issues in the vault",
        "I found a few issues in this audit, hope they are valid",
        "the audit results will be out once judging ends",
        "my findings from this audit are all lows I think",
        "so many duplicates in this audit",
        *(f"this audit was a lot of fun, number {i}" for i in range(8)),
    ]
    store.upsert([message(1, summary), *(message(10 + i, text) for i, text in enumerate(nearer))])
    index = LoreIndex(store, chroma_client(tmp_path / "chroma"), embed_model)
    index.rebuild()

    def shown(lexical_slot):  # few candidates by meaning: the summary is found by its words only
        weights = RetrievalWeights(question_penalty=0.0, lexical_slot=lexical_slot)
        hits = WeightedRetriever(index, weights, top_k=3, candidates=3, now=NOW).retrieve(
            "how many unique high and medium findings did the audit have in the end?"
        )
        return {hit.node.metadata["message_id"]: hit.node.metadata["scores"] for hit in hits}

    found = shown(0.2)
    assert len(found) == 3 and list(found)[-1] == "1"
    assert "1" not in shown(0.0)
    # and it says so (--explain), the hits placed by their score do not
    assert [key for key, scores in found.items() if scores.get("by_words")] == ["1"]


def test_a_message_that_only_asks_neither_takes_the_last_place_nor_keeps_it_out():
    def hit(message_id, lexical, score):
        node = TextNode(id_=str(message_id), text="", metadata={"message_id": str(message_id)})
        node.metadata["scores"] = {"lexical": lexical, "question": 0.0}
        return NodeWithScore(node=node, score=score)

    texts = {
        1: "the vault is audited",
        2: "judging ends soon",
        3: "how many unique high findings were there?",  # shown: holds the most words by repeating the question
        4: "any unique high findings in the end?",  # not shown: the most words, by asking
        5: "High risk findings: 6 unique (42 total)",
        6: "findings are in",
    }
    messages = {i: message(i, text) for i, text in texts.items()}
    ranked = [
        hit(1, 0.1, 0.9),
        hit(2, 0.1, 0.8),
        hit(3, 0.9, 0.7),
        hit(4, 0.95, 0.6),
        hit(5, 0.5, 0.5),
        hit(6, 0.3, 0.4),
    ]
    retriever = WeightedRetriever(None, RetrievalWeights(), top_k=3)
    order = [h.node.metadata["message_id"] for h in retriever._with_best_worded(ranked, messages)]
    assert order[:3] == ["1", "2", "5"] and order[3] == "3"
    weak = [hit(1, 0.1, 0.9), hit(2, 0.1, 0.8), hit(3, 0.1, 0.7), hit(6, 0.15, 0.4)]  # under a fifth of the words
    assert retriever._with_best_worded(weak, messages) == weak
    held = [hit(1, 0.6, 0.9), hit(2, 0.1, 0.8), hit(3, 0.1, 0.7), hit(5, 0.5, 0.5)]  # one shown holds more already
    assert retriever._with_best_worded(held, messages) == held
    one_word = [hit(1, 0.1, 0.9), hit(2, 0.1, 0.8), hit(3, 0.1, 0.7), hit(5, 0.512, 0.5)]
    asked = lexical.Query(("lore", "cursed", "cartridge"), {"lore": 1, "cursed": 16, "cartridge": 26}, 231)
    assert lexical.one_word(asked) == pytest.approx(0.512, abs=0.001)  # "lore" alone: the rarest word's share
    least = retriever._least_worded(asked)
    assert least > lexical.one_word(asked)
    assert retriever._with_best_worded(one_word, messages, least) == one_word  # holds one word: no match by words
    assert retriever._with_best_worded(one_word, messages)[2].node.metadata["message_id"] == "5"
    assert lexical.one_word(lexical.Query(("hash",), {"hash": 3}, 100)) == 1.0
    assert WeightedRetriever(None, RetrievalWeights(lexical_slot=0.0), top_k=3)._least_worded(asked) == 0.0
    for top_k in (0, 1):  # no place but the first: the best by the sum keeps it
        few = WeightedRetriever(None, RetrievalWeights(), top_k=top_k)
        assert few._with_best_worded(one_word, messages) == one_word
    paired = [hit(1, 0.1, 0.9), hit(2, 0.1, 0.8), hit(6, 0.1, 0.7), hit(5, 0.5, 0.5)]
    paired[2].node.metadata["answers"] = 2  # the reply to the problem shown above it keeps its place
    assert retriever._with_best_worded(paired, messages) == paired
    paired[2].node.metadata["answers"] = 7  # the answer to a question it replaced (not shown): the last place is taken
    order = [h.node.metadata["message_id"] for h in retriever._with_best_worded(paired, messages)]
    assert order == ["1", "2", "5", "6"]


def test_the_messages_holding_most_of_a_questions_rare_words_are_found_whatever_their_length(store):
    store.upsert(
        [
            message(1, "unique high findings"),  # both rare words
            message(2, "a unique one"),  # one rare word only
            message(3, " ".join(["filler"] * 300) + " unique findings"),  # long, both rare words
            message(4, "unique findings in a private thread", private=True, channel=7),
            message(5, "high tide"),
            message(6, "high noon"),
            *(message(100 + i, f"the findings of day {i}") for i in range(lexical.RARE_HOLDERS + 1)),  # not rare
        ]
    )
    asked = store.lexical_query("how many unique high findings?")
    assert asked.counts["findings"] > lexical.RARE_HOLDERS >= asked.counts["unique"]
    assert store.rare_holders(asked, 5) == [1]  # "findings" is held too widely to count: 3 holds one rare word
    wider = store.lexical_query("how many unique high filler?")
    assert wider.counts["filler"] < wider.counts["high"]
    assert store.rare_holders(wider, 5) == [3, 1]  # read whole, the long message holds the rarer words
    assert store.rare_holders(wider, 1) == [3] and store.rare_holders(wider, 5, leaving={3}) == [1]
    assert store.rare_holders(wider, 5, longer_than=PART_TOKENS) == [3]
    private = store.lexical_query("unique private thread")
    assert store.rare_holders(private, 5) == [] and store.rare_holders(private, 5, channel_id=7) == [4]
    assert store.rare_holders(store.lexical_query("unique"), 5) == []  # one word: BM25's ranking is as good


def test_a_long_post_left_out_by_bm25_for_its_length_takes_the_last_place_by_its_rare_words(
    store, tmp_path, embed_model, monkeypatch
):
    awards = "\n".join(f"${i}.35 USDC » member{i}" for i in range(60))
    summary = f"{awards}\n\nFindings summary\nHigh risk findings: 6 unique (42 total)\nMed risk: 25 (131 total)"
    shorter = [  # each holds a word of the question: BM25 ranks them above the long post
        *(f"a unique high note, number {i}" for i in range(3)),
        *(f"high risk play, number {i}" for i in range(3)),
        *(f"my findings, number {i}" for i in range(3)),
        "the audit had so many interesting issues in the vault",  # nearer by meaning
        "I found a few issues in this audit, hope they are valid",
        "the audit results will be out once judging ends",
        "so many duplicates in this audit",
        *(f"this audit was a lot of fun, number {i}" for i in range(8)),
    ]
    store.upsert([message(1, summary), *(message(10 + i, text) for i, text in enumerate(shorter))])
    index = LoreIndex(store, chroma_client(tmp_path / "chroma"), embed_model)
    index.rebuild()
    query = "how many unique high risk findings did the audit have?"
    retriever = WeightedRetriever(index, RetrievalWeights(), top_k=3, candidates=5, now=NOW)
    assert 1 not in [m for m, _ in store.lexical_search(query, 8)]
    vector = embed_model.get_query_embedding(query)
    assert "1" not in retriever._nearest(index.current().vector_store.client, vector, None)

    hits = {hit.node.metadata["message_id"]: hit for hit in retriever.retrieve(query)}
    assert "1" in hits and hits["1"].node.metadata["scores"].get("by_words")
    assert "6 unique (42 total)" in hits["1"].node.get_content()  # shown by the part holding the words
    monkeypatch.setattr("indexes.vector.RARE_HOLDERS_READ", 0)
    assert "1" not in [hit.node.metadata["message_id"] for hit in retriever.retrieve(query)]


def test_only_a_long_message_found_by_its_rare_words_holding_more_of_them_than_any_other_is_read():
    awards = "\n".join(f"${i}.35 USDC » member{i}" for i in range(60))
    long = message(1, f"{awards}\n\nHigh risk findings: 6 unique (42 total)")
    short = message(2, "unique high findings were few, a long and thorough audit of this vault in the end")
    other = message(3, "high findings")
    messages = {m.id: m for m in (long, short, other)}
    retriever = WeightedRetriever(None, RetrievalWeights(), top_k=3)
    held = {1: 0.5, 2: 0.6, 3: 0.3}
    # one part: BM25 left it out for holding fewer words, not for its length
    assert retriever._best_worded_rare([long, short], ["3"], messages, held, 0.2) == [long]
    assert retriever._best_worded_rare([long], ["3"], messages, {**held, 3: 0.5}, 0.2) == []  # another holds as many
    assert retriever._best_worded_rare([long], ["3"], messages, held, 0.55) == []  # fewer than the slot needs


def test_the_coverage_of_a_long_message_is_that_of_its_part_holding_most_of_the_words(store):
    rules = " ".join(f"Rule {i}: be kind to other wardens and read the docs before asking." for i in range(12))
    post = f"The glimmerstone key is kept safe. {rules} Ask the quartermaster for the north vault."
    assert len(_split(post)) == 2 and "quartermaster" not in _split(post)[0]
    store.upsert([message(1, post), message(2, "the glimmerstone quartermaster"), message(3, "a pie")])
    asked = store.lexical_query("glimmerstone quartermaster")
    held, part = _covered(asked, {1: post, 2: "the glimmerstone quartermaster", 3: "a pie"})
    # its two words are far apart: each part holds one, as the short message holds both
    assert held[2] == pytest.approx(1.0) and 0.3 < held[1] < 0.7 and held[3] == 0.0
    assert part[1] == 0 and "glimmerstone" in _split(post)[0]


def test_a_message_far_by_meaning_found_for_the_words_it_holds_stays_a_candidate_for_the_last_place():
    nodes = {str(i): TextNode(id_=str(i), text="", metadata={"message_id": str(i)}) for i in (1, 2)}
    candidates = {key: _Candidate(node=node) for key, node in nodes.items()}
    for candidate in candidates.values():
        candidate.parts = {0: 0.1}  # under min_similarity
    messages = {1: message(1, "High risk findings: 6 unique (42 total)"), 2: message(2, "the findings")}
    held = {1: 0.45, 2: 0.1}  # 0.1 + w_lex * 0.45: under min_similarity too
    retriever = WeightedRetriever(None, RetrievalWeights(), top_k=3)
    kept = retriever._scored(candidates, messages, held, NOW.timestamp(), by_words=True)
    assert [hit.node.metadata["message_id"] for hit in kept] == ["1", "2"]
    assert retriever._scored(candidates, messages, held, NOW.timestamp()) == []


def test_the_message_taking_the_last_place_by_its_words_is_shown_by_the_part_holding_them():
    def hit(message_id, lexical, score, part=0):
        node = TextNode(id_=str(message_id), text="", metadata={"message_id": str(message_id), "part": part})
        node.metadata["scores"] = {"lexical": lexical, "question": 0.0}
        return NodeWithScore(node=node, score=score)

    rules = " ".join(f"Rule {i}: be kind to other wardens and read the docs before asking." for i in range(12))
    messages = {i: message(i, f"a message {i}") for i in range(1, 4)} | {4: message(4, f"{rules} Findings: 6 high")}
    assert len(_split(messages[4].content)) == 2
    ranked = [hit(1, 0.1, 0.9), hit(2, 0.1, 0.8), hit(3, 0.1, 0.7), hit(4, 0.6, 0.3, part=0)]
    ranked[3].node.metadata["goes_on"] = [9]  # as if paired with its last words
    retriever = WeightedRetriever(None, RetrievalWeights(), top_k=3)
    shown = retriever._with_best_worded(ranked, messages, worded_part={4: 1})
    assert shown[2].node.metadata["message_id"] == "4" and shown[2].node.metadata["part"] == 1
    assert shown[2].node.metadata["goes_on"] == []  # found by another part: nothing goes on after it


def test_one_reaction_adds_the_same_whatever_the_other_candidates_have(store, tmp_path, embed_model):
    store.upsert([message(1, "the pizza oven at the meetup was great", reactions=1)])
    alone = retrieve(store, tmp_path / "a", embed_model, "pizza oven")[0].node.metadata["scores"]["engagement"]
    store.upsert([message(2, "pizza oven pizza oven, what a night", reactions=50)])
    crowded = retrieve(store, tmp_path / "b", embed_model, "pizza oven", top_k=2)
    scores = {h.node.metadata["message_id"]: h.node.metadata["scores"]["engagement"] for h in crowded}
    assert scores["1"] == pytest.approx(alone) and 0 < alone < scores["2"] <= 1.0


def test_similarity_decides_and_recency_and_reactions_only_break_ties(store, tmp_path, embed_model):
    store.upsert(
        [
            message(1, "kiwi holds the tetris record with 412 lines", minutes_ago=3 * 365 * 24 * 60),
            message(2, "tetris night was fun, I played some today", minutes_ago=60, reactions=40),
        ]
    )
    hits = retrieve(store, tmp_path, embed_model, "who holds the tetris record?", top_k=2)
    assert [h.node.metadata["message_id"] for h in hits] == ["1", "2"]


# Questions and answers


def test_only_asks():
    assert only_asks("which chain will it launch on first?") and only_asks("Are the owner and manager trusted roles")
    assert only_asks("@sponsor is the oracle trusted")
    assert only_asks("ok where do i get the POOL_INIT_CODE_HASH") and only_asks("btw, where is the vault deployed")
    assert not only_asks("ok will do") and not only_asks("please do a full flash erase first, then reflash")
    assert tells_of_a_fix("ok did foundryup and it worked")
    assert not only_asks("arbitrum l2 first") and not only_asks("It launches on arbitrum first.")
    # Wondering asks too, with no question mark and no question word first.
    assert only_asks("Hey @0xAndy, I believe you missed this question. If owner is trusted, I wonder if manager is.")
    assert only_asks("I want to ask about the fees when someone sells tokens")
    assert only_asks("someone can really explain what the address of curvesTokenSubject is")
    link = "https://github.com/code-423n4/2024-01-curves/blob/main/contracts/Curves.sol#L439"
    asking = f"The `mint()` function is protected by `onlyTokenSubject` here {link}. May I ask, is it by design?"
    assert only_asks(asking * 2)  # a link's path is no words of the question
    assert only_asks("check this one https://github.com/a/b/issues/3?")  # the "?" after a link is the question's
    for answer in (  # hedges that answers use
        "Not sure if it helps, but running npm install --force fixed it for me.",
        "I was wondering the same, turns out the rate is in wei for model 2.",
        "If someone can reproduce it, the bug is real and worth a report.",
    ):
        assert not only_asks(answer), answer
    assert not only_asks("I wonder if " + "anyone reads the whole of a very long post like this one " * 6)
    # A statement a confirming tag ends answers; a complaint, a request or a condition before the tag asks.
    assert not only_asks("Its called LeverageTransformer.sol, which readme?")
    assert not only_asks("it is set in the constructor, isn't it?")
    assert not only_asks("it's in the readme, did you check?")
    assert only_asks("If I call it twice in one block, is it ok?") and only_asks("hmm, why?")
    assert only_asks("The claim button is greyed out, why?") and only_asks("Need the contract address, which chain?")
    assert only_asks("Hey guys, where is the staking contract? I looked on etherscan, which address?")
    # "have", "was" and their kin open a question before the one asked of, not before what they say
    assert only_asks("Have you disabled via_ir") and only_asks("was it fixed") and only_asks("has anyone tried forge")
    assert not only_asks("Have a look at the readme") and not only_asks("had the same problem, reflashing fixed it")
    assert not only_asks("was able to fix it by reflashing the bootloader")
    assert not only_asks("Had this exact error yesterday, npm install --force fixed it")
    assert not only_asks("Have it working now with 0.8.20") and not only_asks("Was there yesterday, it ends Friday")


def test_a_reply_saying_its_author_does_not_know_answers_nothing():
    question = message(1, "What is the difference between global and local tokens?", minutes_ago=30, author=5)
    for unsure in ("sorry, I’m not sure about that", "no idea", "idk tbh", "I don't know, sorry"):
        replied = StoredMessage(**{**message(2, unsure, minutes_ago=29).__dict__, "reply_to": 1})
        assert explicit_answer(question, [replied]) is None, unsure
        assert likely_answer(question, [message(2, unsure, minutes_ago=29)]) is None, unsure
        assert found_answer(question, [message(2, unsure, minutes_ago=29)]) is None, unsure
    hedged = message(3, "not sure, but I think global tokens are the ones kept on the root chain", minutes_ago=28)
    assert likely_answer(question, [message(2, "no idea", minutes_ago=29), hedged]) == hedged
    assert not_known("@bob no idea")
    for said in ("Not sure, 0.8.20 I think", "idk, try foundryup", "no idea why, restarting fixed it", "idk maybe v2"):
        assert not not_known(said), said  # a figure, a try, a fix, a guess: it goes on to say something


def test_a_message_that_wonders_gives_its_place_to_the_answer_that_follows(store, tmp_path, embed_model):
    wondering = "Hey @sponsor, I believe you missed this question. If owner is trusted, I wonder if manager is trusted."
    store.upsert(
        [
            message(1, wondering, minutes_ago=30, author=5),
            message(2, "Both are trustable. Admin in the future will be a dao", minutes_ago=27, author=6),
            *(message(10 + i, f"the vault liquidation logic looks solid, test {i} passes") for i in range(10)),
        ]
    )
    hits = retrieve(store, tmp_path, embed_model, "should wardens treat the manager role as trusted, like the owner?")
    assert [h.node.metadata["message_id"] for h in hits][:1] == ["2"]
    assert hits[0].node.metadata["asks"] is False and "I wonder if manager" in hits[0].node.metadata["replying_to"]


def test_the_likely_answer_is_a_reply_else_a_message_naming_the_asker_else_the_next_one():
    question = message(1, "which chain will it launch on first?", minutes_ago=30, author=5)
    bot = StoredMessage(**{**message(2, "a bot line here", minutes_ago=29).__dict__, "author_is_bot": True})
    follow_up = message(3, "anyone knows?", minutes_ago=28, author=5)
    first = message(4, "the docs are on the site", minutes_ago=27)
    naming = message(5, "@user5 arbitrum l2 first", minutes_ago=26)
    reply = message(6, "arbitrum, then mainnet", minutes_ago=25, reply_to=1)
    assert likely_answer(question, [bot, follow_up, first, naming, reply]) == reply
    assert likely_answer(question, [bot, follow_up, first, naming]) == naming
    assert likely_answer(question, [bot, follow_up, first]) == first
    late = message(7, "arbitrum l2 first", minutes_ago=-60)
    assert likely_answer(question, [bot, follow_up, late]) is None  # outside the window, or only bots and the asker


def test_the_next_message_is_no_answer_when_it_speaks_to_another_member():
    question = message(1, "How many total findings did you guys send?", minutes_ago=30, author=5)
    to_another = message(2, "Hey @Jay | C4 can you share the link to apply for backstage please", minutes_ago=29)
    assert likely_answer(question, [to_another]) is None  # the talk goes on between others
    shared = message(3, "can you share the backstage link", minutes_ago=29)
    by_id = StoredMessage(**{**shared.__dict__, "mentions": [9]})
    assert likely_answer(question, [by_id]) is None  # a mention a JSON export keeps by id
    to_the_asker = message(4, "@user5 I sent 3 highs and a medium", minutes_ago=28)
    assert likely_answer(question, [to_another, to_the_asker]) == to_the_asker
    mailed = message(5, "mail them at team@example.com, they count them", minutes_ago=29)
    assert likely_answer(question, [mailed]) == mailed  # an address is no mention


def test_a_reply_to_the_question_or_to_the_askers_follow_up_answers_at_any_time():
    question = message(1, "which chain will it launch on first?", minutes_ago=300, author=5)
    follow_up = message(2, "this is for the lending vault btw", minutes_ago=299, author=5)
    other = message(3, "gm all", minutes_ago=200, author=7)
    reply = message(4, "arbitrum, then mainnet", minutes_ago=100, author=6, reply_to=2)  # hours later: Discord links it
    assert explicit_answer(question, [follow_up, other, reply]) == reply
    assert likely_answer(question, [follow_up, other, reply]) == reply
    elsewhere = message(5, "arbitrum, then mainnet", minutes_ago=100, author=6, reply_to=3)
    assert explicit_answer(question, [follow_up, other, elsewhere]) is None  # a reply to another member's message
    bot = StoredMessage(**{**reply.__dict__, "author_is_bot": True})
    asking = message(6, "which vault do you mean?", minutes_ago=100, author=6, reply_to=1)
    thanks = message(7, "thx", minutes_ago=100, author=6, reply_to=1)
    me_too = message(8, "same here, no idea", minutes_ago=100, author=8, reply_to=1)
    assert explicit_answer(question, [follow_up, bot, asking, thanks, me_too]) is None  # none of them answers
    fix = message(
        9, "same here, it turned out arbitrum goes first and mainnet after", minutes_ago=90, author=8, reply_to=1
    )
    assert explicit_answer(question, [follow_up, me_too, fix]) == fix


def test_a_figure_alone_answers_a_question_and_a_word_alone_does_not():
    question = message(1, "How many submissions on this one ?", minutes_ago=300, author=5)
    count = message(2, "867", minutes_ago=200, author=6, reply_to=1)
    assert explicit_answer(question, [count]) == count  # "how many?" - "867"
    assert likely_answer(question, [message(3, "$5k", minutes_ago=299, author=6)]).content == "$5k"
    for said in ("thx", "+1", "v2", "867 ?"):  # a word, a vote, a name, a question back
        assert explicit_answer(question, [message(4, said, minutes_ago=200, author=6, reply_to=1)]) is None, said
        assert likely_answer(question, [message(4, said, minutes_ago=299, author=6)]) is None, said
    still_open = message(5, "Is the audit still open?", minutes_ago=300, author=5)  # asks for no figure
    stray, told = message(6, "2", minutes_ago=299, author=6), message(7, "yes until friday", minutes_ago=298, author=7)
    assert likely_answer(still_open, [stray, told]) == told
    assert explicit_answer(still_open, [message(8, "2", minutes_ago=200, author=6, reply_to=5)]) is None


def test_a_short_answer_is_read_back_with_the_question_it_answers(store, tmp_path, embed_model):
    store.upsert(
        [
            message(1, "How many submissions did the contest get in the end?", minutes_ago=300, author=5),
            message(2, "867", minutes_ago=290, author=6, reply_to=1),
            message(3, "What does the h in hTokens stand for?", minutes_ago=280, author=7),
            message(4, "Hermes Tokens", minutes_ago=270, author=6, reply_to=3),
            *(message(10 + i, f"the vault liquidation logic looks solid, test {i} passes") for i in range(10)),
        ]
    )
    hits = retrieve(store, tmp_path, embed_model, "how many submissions did the contest get?", top_k=5)
    found = {hit.node.get_content(): hit.node.metadata for hit in hits}
    assert found["867"]["replying_to"] == "How many submissions did the contest get in the end?"  # paired
    hits = retrieve(store, tmp_path, embed_model, "what does the h in hTokens stand for?", top_k=5)
    found = {hit.node.get_content(): hit.node.metadata for hit in hits}
    assert found["Hermes Tokens"]["replying_to"] == "What does the h in hTokens stand for?"  # a reply, found itself
    assert thread_of(message(5, "yes it is"), ["is it on arbitrum?"]) == ""  # embedded: too short to add to it
    assert thread_of(message(5, "yes it is"), ["is it on arbitrum?"], short=True) == "is it on arbitrum?"


def test_tells_of_a_fix():
    for fix in (
        "`Npm install --force` worked for me, incase anyone runs into same issue",
        "that was the reason, thanks, I ran foundryup and it worked after that",
        "fixed it by reflashing the bootloader",
        "reinstalling node did the trick",
    ):
        assert tells_of_a_fix(fix), fix
    for other in (
        "it worked before the update, now it fails every time",
        "has running foundryup worked for you?",
        "I keep getting this error",
        "the fix is in the next release",
    ):
        assert not tells_of_a_fix(other), other


def test_what_the_asker_says_fixed_it_is_the_answer_before_anyone_elses_reply():
    report = message(1, "i keep getting this error: The engine node is incompatible", minutes_ago=60, author=5)
    other = message(2, "no such error on my machine", minutes_ago=58, author=6, reply_to=1)
    asking_back = message(3, "Do you have the latest version of node?", minutes_ago=57, author=7, reply_to=1)
    confirmed = message(
        4, "that was the reason, I updated node and it worked after that", minutes_ago=55, author=5, reply_to=3
    )
    assert own_fix(report, [other, asking_back, confirmed]) == confirmed  # in the thread: a reply to a reply to it
    alone = message(5, "`npm install --force` worked for me", minutes_ago=50, author=5)
    assert own_fix(report, [other, alone]) == alone  # said on its own
    assert own_fix(report, [other]) is None
    thanks = message(10, "thanks, that worked!", minutes_ago=50, author=5, reply_to=2)  # the fix is in what it thanks
    assert own_fix(report, [other, thanks]) is None
    elsewhere = message(6, "updating node worked for me", minutes_ago=50, author=5, reply_to=99)  # another thread
    by_another = message(7, "`npm install --force` worked for me", minutes_ago=50, author=6)
    still_failing = message(8, "it worked once, now it fails again", minutes_ago=50, author=5)
    late = message(9, "`npm install --force` worked for me", minutes_ago=60 - 31, author=5)  # past ANSWER_WINDOW
    assert own_fix(report, [other, elsewhere, by_another, still_failing, late]) is None


def test_reports_problem():
    for report in (
        "Just updated one of my repeaters... seemed to fail the first time, fails to initialize DFU",
        "i keep getting this error when i run forge test",
        "the node won't boot after flashing the bootloader",
    ):
        assert reports_problem(report), report
    assert not reports_problem("The new bootloader boots fast and the OTA update worked first time.")
    for no_problem in (
        "fixed it, no errors now after reflashing",
        "Error handling docs are at the wiki page",
        "that error means you need to reflash the bootloader",
    ):
        assert not reports_problem(no_problem), no_problem
    assert not reports_problem("why does forge test fail here?")  # a question: paired as questions are


def test_a_problem_told_of_brings_the_reply_that_fixes_it(store, tmp_path, embed_model):
    report = "the flashing app fails on the first try with my quintar board, only works after a restart"
    store.upsert(
        [
            message(1, report, minutes_ago=300, author=5),
            message(2, "This is on Android 15 btw", minutes_ago=295, author=5),
            message(3, "You need to turn force scanning on in the settings", minutes_ago=150, author=6, reply_to=2),
            *(message(10 + i, f"the quintar board {i} arrived today, nice antenna") for i in range(8)),
        ]
    )
    query = "the flashing app fails on my quintar board until I restart it, what setting is missing?"
    hits = retrieve(store, tmp_path, embed_model, query, top_k=3)
    ids = [h.node.metadata["message_id"] for h in hits]
    assert ids[:2] == ["1", "3"]  # the problem stays, its fix comes right after it
    assert "flashing app fails" in hits[1].node.metadata["replying_to"]
    plain = retrieve(store, tmp_path, embed_model, query, RetrievalWeights(question_penalty=0.0), top_k=3)
    assert "3" not in [h.node.metadata["message_id"] for h in plain]  # without the pairing, the fix is not found


def test_a_problem_told_of_brings_what_its_teller_said_fixed_it(store, tmp_path, embed_model):
    report = "i keep getting this error when installing the quintar tools: the engine node is incompatible"
    store.upsert(
        [
            message(1, report, minutes_ago=300, author=5),
            message(2, "weird, no such error on my machine here", minutes_ago=298, author=6, reply_to=1),
            message(3, "`npm install --force` worked for me, in case anyone runs into it", minutes_ago=290, author=5),
            *(message(10 + i, f"the quintar board {i} arrived today, nice antenna") for i in range(8)),
        ]
    )
    hits = retrieve(store, tmp_path, embed_model, "installing the quintar tools fails: engine node incompatible, fix?")
    ids = [h.node.metadata["message_id"] for h in hits]
    assert ids[:2] == ["1", "3"]  # the problem, then what fixed it, read with it
    assert "engine node is incompatible" in hits[1].node.metadata["replying_to"]


def test_a_question_found_gives_its_place_to_its_unlinked_answer(store, tmp_path, embed_model):
    store.upsert(
        [
            message(1, "which chain will the lending protocol launch on first?", minutes_ago=30, author=5),
            message(2, "arbitrum l2 first, mainnet later", minutes_ago=29, author=6),
            *(message(10 + i, f"the vault liquidation logic looks solid, test {i} passes") for i in range(10)),
        ]
    )
    hits = retrieve(store, tmp_path, embed_model, "on which network is the protocol deployed first?")
    assert hits[0].node.get_content() == "arbitrum l2 first, mainnet later"
    assert "launch on first" in hits[0].node.metadata["replying_to"]
    assert "1" not in [h.node.metadata["message_id"] for h in hits]  # the question itself gives way
    plain = retrieve(
        store,
        tmp_path,
        embed_model,
        "on which network is the protocol deployed first?",
        RetrievalWeights(question_penalty=0.0),
        top_k=3,
    )
    assert plain[0].node.metadata["message_id"] == "1"  # without the pairing, the question comes first


def test_an_answer_found_by_the_search_may_come_hours_after_the_question():
    question = message(1, "Are operators trusted in this protocol?", minutes_ago=600, author=5)
    answer = message(2, "They are partially trusted, run by the team", minutes_ago=240, author=6)
    assert found_answer(question, [answer]) == answer  # six hours later, no reply link
    bot = StoredMessage(**{**answer.__dict__, "author_is_bot": True})
    own = message(3, "they are trusted I guess", minutes_ago=230, author=5)
    before = message(4, "operators are run by the team", minutes_ago=700, author=6)
    late = message(5, "they are partially trusted", minutes_ago=600 - 25 * 60, author=6)
    asking = message(6, "are they trusted at all?", minutes_ago=200, author=7)
    failing = message(7, "the operator bot keeps failing on my position", minutes_ago=200, author=7)
    assert found_answer(question, [bot, own, before, late, asking, failing]) is None
    assert found_answer(question, [own, before, answer, late]) == answer  # the best found that may answer


def test_a_question_found_without_an_answer_after_it_gives_its_place_to_one_the_search_found(
    store, tmp_path, embed_model
):
    store.upsert(
        [
            message(1, "are the operator accounts of the automators trusted?", minutes_ago=600, author=5),
            message(2, "They are partially trusted, run by the team: they choose how swaps are made", minutes_ago=240),
            *(
                message(10 + i, f"the vault liquidation logic looks solid, test {i} passes", 60 * 24 * 3)
                for i in range(8)
            ),
        ]
    )
    hits = retrieve(store, tmp_path, embed_model, "can the automator operator accounts be fully trusted?")
    ids = [h.node.metadata["message_id"] for h in hits]
    assert ids[0] == "2" and "1" not in ids  # the question gives way to the answer given six hours later
    assert "operator accounts" in hits[0].node.metadata["replying_to"]


def test_an_answer_goes_on_in_its_authors_next_messages():
    answer = message(2, "it's on the readme", minutes_ago=30, author=6, reply_to=1)
    constant = message(3, "bytes32 internal constant POOL_INIT_CODE_HASH = 0xe34f", minutes_ago=30, author=6)
    path = message(4, "`lib/v3-periphery/contracts/libraries/PoolAddress.sol` change it here", minutes_ago=28, author=6)
    thanks = message(5, "thanks, that was it", minutes_ago=27, author=5)
    assert goes_on(answer, [constant, path, thanks]) == [constant, path]
    assert goes_on(answer, [thanks, constant]) == []  # someone else spoke first: the talk went on
    late = message(6, "also update foundry", minutes_ago=26, author=6)
    assert goes_on(answer, [constant, late]) == [constant]  # four minutes after the one before: something else
    asking = message(7, "did that work for you?", minutes_ago=29, author=6)
    assert goes_on(answer, [asking, path]) == []  # a question of its own
    elsewhere = message(8, "and the vault test is fine", minutes_ago=29, author=6, reply_to=99)
    assert goes_on(answer, [elsewhere]) == []  # a reply to another message
    same_thread = message(9, "see the v3-periphery lib", minutes_ago=29, author=6, reply_to=1)
    assert goes_on(answer, [same_thread]) == [same_thread]  # a second reply to the same question
    for other in ("that fails on the T-Deck though, error 5", "flash it again. did that help? if not, erase", ""):
        assert goes_on(answer, [message(20, other, minutes_ago=29, author=6)]) == []  # a problem, a question, no words
    retort = StoredMessage(**{**message(21, "nope, that's wrong", minutes_ago=29, author=6).__dict__, "mentions": [1]})
    assert goes_on(answer, [retort]) == [] and goes_on(answer, [message(22, "@Susu that's wrong", 29, author=6)]) == []
    to_the_asker = message(23, "@user5 the readme of the periphery lib", minutes_ago=29, author=6)
    named = message(24, "@user5 see the readme", minutes_ago=30, author=6, reply_to=1)
    assert goes_on(named, [to_the_asker]) == [to_the_asker]  # the one the answer spoke to already
    lines = [message(10 + i, f"line {i} of the fix", minutes_ago=30, author=6) for i in range(GOES_ON_MESSAGES + 2)]
    assert goes_on(answer, lines) == lines[:GOES_ON_MESSAGES]


def test_an_answer_said_in_several_messages_is_found_whole_and_once(store, tmp_path, embed_model):
    path = "`lib/v3-periphery/contracts/libraries/PoolAddress.sol` change it here"
    store.upsert(
        [
            message(1, "ok where do i get the POOL_INIT_CODE_HASH", minutes_ago=60, author=5),
            message(2, "it's on the readme", minutes_ago=58, author=6, reply_to=1),
            message(3, path, minutes_ago=57, author=6),
            message(4, "thanks, the forked tests pass now", minutes_ago=50, author=5),
            *(message(10 + i, f"the vault liquidation logic looks solid, test {i} passes") for i in range(10)),
        ]
    )
    hits = retrieve(store, tmp_path, embed_model, "in which file do I set POOL_INIT_CODE_HASH?", top_k=5)
    ids = [h.node.metadata["message_id"] for h in hits]
    assert ids[0] == "2" and "1" not in ids and "3" not in ids  # the answer, whole: its second message not twice
    assert hits[0].node.get_content() == f"it's on the readme\n{path}"
    assert hits[0].node.metadata["more_ids"] == [3]
    (item,) = [item for item in llama_index_search_of(store, tmp_path, embed_model)("where is the hash set?")[:1]]
    assert item.held_ids == (2, 1, 3)  # a reply made from it is made from all three: deleting one takes it
    store.delete([3])
    hits = retrieve(store, tmp_path, embed_model, "in which file do I set POOL_INIT_CODE_HASH?", top_k=5)
    assert all("PoolAddress" not in h.node.get_content() for h in hits)  # read from the store at each search


def test_lexical_hits_left_unread_are_read_once_hits_are_taken_into_an_answer(
    store, tmp_path, embed_model, monkeypatch
):
    store.upsert(
        [
            message(1, "ok where do i get the POOL_INIT_CODE_HASH", minutes_ago=60, author=5),
            message(2, "it's on the readme", minutes_ago=58, author=6, reply_to=1),
            message(3, "the pool init code hash is in the readme of the periphery lib", minutes_ago=57, author=6),
            message(4, "POOL_INIT_CODE_HASH differs on arbitrum, zzz", minutes_ago=3000, author=7),
            *(message(10 + i, f"i get the test tokens for the vault from the faucet, number {i}") for i in range(12)),
        ]
    )
    index = LoreIndex(store, chroma_client(tmp_path / "chroma"), embed_model)
    index.rebuild()
    retriever = WeightedRetriever(index, RetrievalWeights(), top_k=3, candidates=3, now=NOW)

    def shown(hits):
        return [(hit.node.metadata["message_id"], hit.score, hit.node.get_content()) for hit in hits]

    # The bound that leaves lexical hits unread counts the hits below an answer: once some are taken into it, the
    # rest must be read. Here the bound reads none up front; the merge of 3 into 2 then reads them all.
    monkeypatch.setattr(WeightedRetriever, "_within_reach", lambda self, unseen, *args: [])
    bounded = shown(retriever.retrieve("where do i get the POOL_INIT_CODE_HASH?"))
    monkeypatch.setattr(WeightedRetriever, "_within_reach", lambda self, unseen, *args: unseen)
    every_part = shown(retriever.retrieve("where do i get the POOL_INIT_CODE_HASH?"))
    assert bounded == every_part and [i for i, _, _ in bounded][:2] == ["2", "4"]
    assert bounded[0][2].startswith("it's on the readme\nthe pool init code hash")


def test_a_message_two_answers_go_on_in_is_shown_once():
    class Index:  # the store's threads: none of these messages replies to another
        store = type("Store", (), {"threads": lambda self, chosen, depth: {}})()

    retriever = WeightedRetriever(Index(), RetrievalWeights(), top_k=3)
    said = {i: message(i, text, author=6) for i, text in ((2, "first answer"), (3, "second answer"), (4, "the file"))}

    def hit(i, goes_on):
        return NodeWithScore(node=TextNode(id_=str(i), text="", metadata={"message_id": str(i), "goes_on": goes_on}))

    # A member answered two questions in a row, then named the file: both answers go on in it, shown once.
    hits = retriever._read_back([hit(3, [4]), hit(2, [3, 4])], said)
    assert [h.node.get_content() for h in hits] == ["second answer\nthe file", "first answer"]
    assert [h.node.metadata["more_ids"] for h in hits] == [[4], []]


def llama_index_search_of(store, tmp_path, embed_model):
    from chains.retrieve import llama_index_search

    index = LoreIndex(store, chroma_client(tmp_path / "chroma"), embed_model)
    index.rebuild()
    return llama_index_search(WeightedRetriever(index, RetrievalWeights(), top_k=5, now=NOW))


def test_a_deleted_answer_is_never_paired(store, tmp_path, embed_model):
    store.upsert(
        [
            message(1, "which chain will the lending protocol launch on first?", minutes_ago=30, author=5),
            message(2, "arbitrum l2 first", minutes_ago=29, author=6),
            message(3, "the docs say the vault is audited", minutes_ago=20, author=7),
        ]
    )
    store.delete([2])
    hits = retrieve(store, tmp_path, embed_model, "on which network is the protocol deployed first?")
    assert all("arbitrum" not in h.node.get_content() for h in hits)


# Parts of a long message


def test_a_long_post_is_found_and_shown_by_its_closest_part(store, tmp_path, embed_model):
    filler = " ".join(f"Rule {i}: be kind to other wardens and read the docs before asking." for i in range(12))
    post = f"Welcome to the audit channel! The prize pool is $88,500 in USDC. {filler} Audit Page: https://example.org"
    store.upsert([message(1, post), *(message(10 + i, f"gm wardens, coffee number {i}") for i in range(5))])
    hits = retrieve(store, tmp_path, embed_model, "how big is the prize pool of the audit?", top_k=1)
    assert "$88,500" in hits[0].node.get_content()
    assert len(hits[0].node.get_content()) < len(post) and hits[0].node.metadata["scores"]["similarity"] > 0.5


def test_a_deleted_long_posts_parts_leave_memory_when_the_index_applies_the_deletion(store, tmp_path, embed_model):
    rules = " ".join(f"Rule {i}: be kind to other wardens and read the docs before asking." for i in range(12))
    store.upsert([message(1, f"{rules} The vault code is 4417."), message(2, "gm")])
    index = LoreIndex(store, chroma_client(tmp_path / "chroma"), embed_model)
    index.rebuild()
    _split(f"{rules} The vault code is 4417.")  # as a search reads it
    assert _split_long.cache_info().currsize > 0  # kept for the next searches
    store.delete([1])
    index.sync()
    assert _split_long.cache_info().currsize == 0


def test_a_long_post_found_by_its_words_alone_is_shown_by_its_closest_part(store, tmp_path, embed_model):
    rules = " ".join(f"Rule {i}: be kind to other wardens and read the docs before asking." for i in range(12))
    post = f"{rules} The glimmerstone key opens the north vault of the castle, ask the quartermaster for it."
    near = [f"guard {i} keeps a key to a castle vault" for i in range(8)]
    store.upsert([message(1, post), *(message(10 + i, text) for i, text in enumerate(near))])
    index = LoreIndex(store, chroma_client(tmp_path / "chroma"), embed_model)
    index.rebuild()
    query = "which key opens the north vault of the castle, the glimmerstone one?"

    retriever = WeightedRetriever(index, RetrievalWeights(), top_k=3, candidates=3, now=NOW)
    nearest = retriever._nearest(index.current().vector_store.client, embed_model.get_query_embedding(query), None)
    assert "1" not in nearest  # the guards' messages are nearer
    hit = {hit.node.metadata["message_id"]: hit for hit in retriever.retrieve(query)}["1"]
    # found by its words, and shown by the part that holds them
    assert hit.node.metadata["part"] > 0 and "glimmerstone key opens" in hit.node.get_content()


CASTLE_QUESTION = "which key opens the north vault of the castle, the old one?"


def castle(store, tmp_path, embed_model, monkeypatch, *more, weights=None):
    """A channel where recipes match CASTLE_QUESTION by "one" alone; a retriever, and the ids of the messages
    whose parts each of its `_parts` calls reads."""
    wardens = [message(100 + i, f"warden {i} keeps the key that opens the north vault of the castle") for i in range(8)]
    sentries = [message(150 + i, f"sentry {i} watches the fortress treasury door at night") for i in range(16)]
    bread = [message(200 + i, f"one more bread recipe, number {i}, needs flour and salt") for i in range(30)]
    store.upsert([*wardens, *sentries, *bread, *more])
    index = LoreIndex(store, chroma_client(tmp_path / "chroma"), embed_model)
    index.rebuild()
    read: list[list[int]] = []
    real_parts = WeightedRetriever._parts

    def spy(self, messages, vector):
        read.append([m.id for m in messages])
        return real_parts(self, messages, vector)

    monkeypatch.setattr(WeightedRetriever, "_parts", spy)
    retriever = WeightedRetriever(index, weights or RetrievalWeights(), top_k=3, candidates=20, now=NOW)
    return retriever, read, bread


def test_only_the_lexical_hits_that_could_rank_have_their_parts_read(store, tmp_path, embed_model, monkeypatch):
    retriever, read, bread = castle(store, tmp_path, embed_model, monkeypatch)
    query = CASTLE_QUESTION

    found = [(hit.node.metadata["message_id"], hit.score) for hit in retriever.retrieve(query)]
    monkeypatch.setattr(WeightedRetriever, "_within_reach", lambda self, unseen, *args: unseen)
    every_part = [(hit.node.metadata["message_id"], hit.score) for hit in retriever.retrieve(query)]

    # the recipes are found by "one" alone, and far in meaning: even at their best they rank below the wardens
    assert len(read[1]) > 5 and set(read[1]) <= {m.id for m in bread}
    assert read[0] == [] and found == every_part


def test_an_answer_found_through_its_question_only_holds_none_of_its_words(store, tmp_path, embed_model, monkeypatch):
    asked = message(300, "which key opens the north vault of the castle, the old one?", minutes_ago=3000, author=1)
    answer = message(301, "the bronze, go ask Ilse for it", minutes_ago=2999, author=2)
    retriever, read, _ = castle(store, tmp_path, embed_model, monkeypatch, asked, answer)
    hits = {hit.node.metadata["message_id"]: hit for hit in retriever.retrieve(CASTLE_QUESTION)}
    assert 301 not in {i for ids in read for i in ids}  # never read: found through its question only
    assert hits["301"].node.metadata["scores"]["lexical"] == 0.0  # not the question's, which repeats the asking
    assert hits["301"].node.metadata["scores"]["similarity"] > 0.5  # the question's: it stands in its place


def test_an_answer_left_unread_is_read_when_its_question_is_paired_with_it(store, tmp_path, embed_model, monkeypatch):
    asked = message(300, "which key opens the north vault of the castle?", minutes_ago=3 * 24 * 60, author=1)
    steps = " ".join(f"Step {i}: knead the dough for one more minute, then let it rest." for i in range(20))
    answer = message(301, f"one key, the bronze one. {steps}", minutes_ago=3 * 24 * 60 - 1, author=2)
    # the answer holds the most of the question's words: without the last place they give it, it is not read first
    weights = RetrievalWeights(lexical_slot=0.0)
    retriever, read, _ = castle(store, tmp_path, embed_model, monkeypatch, asked, answer, weights=weights)
    query = CASTLE_QUESTION

    def shown(hits):
        return [(hit.node.metadata["message_id"], hit.score, hit.node.metadata.get("part")) for hit in hits]

    found = shown(retriever.retrieve(query))
    monkeypatch.setattr(WeightedRetriever, "_within_reach", lambda self, unseen, *args: unseen)
    every_part = shown(retriever.retrieve(query))

    assert read[0] == [] and read[1] == [301]  # left unread, then read once its question found it
    assert found == every_part and ("301", found[0][1], found[0][2]) == found[0] and found[0][2] is not None


def test_a_lexical_hit_is_read_when_the_pairing_could_leave_room_for_it():
    retriever = WeightedRetriever(None, RetrievalWeights(), top_k=2, candidates=2)

    def hit(i, score, asks):
        node = TextNode(id_=str(i), text="", metadata={"message_id": str(i), "scores": {"question": -0.2 * asks}})
        return NodeWithScore(node=node, score=score)

    nearest = {str(i): _Candidate(node=TextNode(id_=str(i)), parts={0: 0.1}) for i in (1, 2)}
    # four questions at the top: paired with one answer, they may leave the second place to the 0.25
    ranked = [hit(1, 1.0, True), hit(2, 0.95, True), hit(3, 0.9, True), hit(4, 0.85, True), hit(5, 0.3, False)]
    ranked += [hit(6, 0.25, False)]
    far, near = message(400, "bread"), message(401, "bread and the vault")
    held = {400: 0.0, 401: 1.0}
    kept = retriever._within_reach([far, near], nearest, ranked, held, NOW.timestamp())
    assert kept == [near]  # at best 0.1 + 0.08 (engagement) + 0.2 (words) + 0.03 (new): above 0.25; "far" not
    for i in range(3):
        ranked[i].node.metadata["scores"]["question"] = 0.0  # answers: none leaves; below the fourth, 0.85, none counts
    assert retriever._within_reach([far, near], nearest, ranked, held, NOW.timestamp()) == [near]  # its words
    retriever.weights = RetrievalWeights(lexical_slot=0.0)
    assert retriever._within_reach([far, near], nearest, ranked, held, NOW.timestamp()) == []
    retriever.weights = RetrievalWeights()  # the one with the most words, read past the bound: never one that asks
    asking = message(402, "any bread in the vault?")
    assert retriever._within_reach([far, asking, near], nearest, ranked, held | {402: 1.0}, NOW.timestamp()) == [near]
    assert retriever._within_reach([far], nearest, ranked, held | {400: 0.1}, NOW.timestamp()) == []  # too few
    assert retriever._within_reach([far, near], nearest, ranked, held, NOW.timestamp(), least=1.01) == []


def test_the_parts_of_lexical_hits_carry_the_indexs_metadata_made_from_the_store(store, tmp_path, embed_model):
    rules = " ".join(f"Rule {i}: be kind to other wardens and read the docs before asking." for i in range(12))
    store.upsert(
        [
            message(1, f"{rules} The glimmerstone key opens the north vault.", reactions=3),
            message(2, "the glimmerstone key is kept by the quartermaster", reply_to=None),
            message(3, "thanks, found the key", reply_to=2),
        ]
    )
    index = LoreIndex(store, chroma_client(tmp_path / "chroma"), embed_model)
    index.rebuild()
    collection = index.current().vector_store.client
    reads = []
    real_get = collection.get
    retriever = WeightedRetriever(index, RetrievalWeights(), now=NOW)
    messages = list(store.get([1, 2]).values())
    try:
        collection.get = lambda **kwargs: (reads.append(kwargs["include"]), real_get(**kwargs))[1]
        found = retriever._parts(messages, embed_model.get_query_embedding("which key opens the north vault?"))
    finally:
        del collection.get
    assert reads == [["embeddings"]]  # the vectors only: the metadata is made from the store
    held = real_get(ids=[key for m in messages for key in part_keys(m)], include=["metadatas"])
    indexed = dict(zip(held["ids"], held["metadatas"]))
    assert set(found) == {"1", "2"} and found["1"].node.metadata["part"] > 0
    for candidate in found.values():  # as the index holds it, but LlamaIndex's own fields
        ours = {k: v for k, v in indexed[candidate.node.node_id].items() if k not in LLAMA_INDEX_FIELDS}
        assert {k: candidate.node.metadata.get(k) for k in ours} == ours
    assert found["1"].node.metadata["engagement"] == 3 and found["2"].node.metadata["engagement"] == 1


def test_the_nearest_entries_carry_the_indexs_metadata_made_from_the_store(store, tmp_path, embed_model):
    store.upsert([message(1, "the glimmerstone key opens the north vault", reactions=2), message(2, "bread and salt")])
    index = LoreIndex(store, chroma_client(tmp_path / "chroma"), embed_model)
    index.rebuild()
    collection = index.current().vector_store.client
    held = collection.get(ids=["1", "2"], include=["metadatas"])
    indexed = dict(zip(held["ids"], held["metadatas"]))
    retriever = WeightedRetriever(index, RetrievalWeights(w_lex=0.0), top_k=1, now=NOW)
    reads = []
    real_query = collection.query
    try:
        collection.query = lambda **kwargs: (reads.append(kwargs["include"]), real_query(**kwargs))[1]
        engaged = retriever.retrieve("which key opens the north vault?")[0].node.metadata["scores"]["engagement"]
        store.upsert([message(3, "thanks, that is the one I needed", reply_to=1)])  # not indexed yet
        hit = retriever.retrieve("which key opens the north vault?")[0]
    finally:
        del collection.query
    assert reads == [["distances"], ["distances"]]  # no metadata read from Chroma: it is made from the store
    ours = {k: v for k, v in indexed["1"].items() if k not in LLAMA_INDEX_FIELDS | {"engagement"}}
    assert hit.node.node_id == "1" and {k: hit.node.metadata.get(k) for k in ours} == ours
    # the engagement is the store's now: the reply counts before the index is synced
    assert hit.node.metadata["engagement"] == 3 and hit.node.metadata["scores"]["engagement"] > engaged


@pytest.mark.parametrize(
    "content",
    ["short", "x" * PART_TOKENS, "é" * (PART_TOKENS // 2 + 1), "漢字 " * 60, "A sentence of the rules. " * 40],
)
def test_part_keys_are_the_ids_the_index_gives_a_message(content):
    entry = message(7, content)
    assert part_keys(entry) == [node.node_id for node, _ in to_nodes(entry, engagement=0)]
    tokenized = [part for part in _splitter().split_text(content) if part.strip()]  # no shortcut for short texts
    assert _split(content) == (tuple(tokenized) if len(tokenized) > 1 else (content,))


def test_a_question_counts_its_words_once_for_the_search_and_the_coverage(store, tmp_path, embed_model):
    store.upsert([message(i, f"the quintar vault opens at dawn, note {i}") for i in range(5)])
    index = LoreIndex(store, chroma_client(tmp_path / "chroma"), embed_model)
    index.rebuild()
    statements: list[str] = []
    store.db.set_trace_callback(statements.append)
    try:
        WeightedRetriever(index, RetrievalWeights(), top_k=3, now=NOW).retrieve("when does the quintar vault open?")
    finally:
        store.db.set_trace_callback(None)
    counted = [s for s in statements if s.startswith(f"SELECT COUNT(*) FROM {lexical.FTS_TABLE} WHERE")]
    assert len(counted) == len(lexical.query_terms("when does the quintar vault open?")) == 3


def counted_words(store, question):
    """The words whose messages were counted in the full-text index for a question (and its counts)."""
    statements: list[str] = []
    store.db.set_trace_callback(statements.append)
    try:
        asked = store.lexical_query(question)
    finally:
        store.db.set_trace_callback(None)
    prefix = f"SELECT COUNT(*) FROM {lexical.FTS_TABLE} WHERE {lexical.FTS_TABLE} MATCH '"
    return [s.removeprefix(prefix).split('"')[1] for s in statements if s.startswith(prefix)], dict(asked.counts)


def test_a_common_words_count_is_kept_until_the_store_has_changed_by_a_percent_of_it(store):
    store.upsert([message(i, f"the quintar vault opens at dawn, note {i}") for i in range(200)])
    store.upsert([message(500, "a blorp guards the vault")])
    first = counted_words(store, "when does the quintar vault open, the blorp?")
    assert first[0] == ["quintar", "vault", "open", "blorp"]
    counted, counts = counted_words(store, "is the vault guarded by a blorp?")
    assert counted == ["guarded", "blorp"]  # the rare words are counted on every question; the common one once
    assert counts == {"vault": 201, "guarded": 1, "blorp": 1}

    store.upsert([message(600, "the vault is shut")])  # one change, within a percent of 201: the kept count
    assert counted_words(store, "the vault?") == ([], {"vault": 201})
    store.upsert([message(601, "the vault is open"), message(602, "the vault is locked")])
    assert counted_words(store, "the vault?") == (["vault"], {"vault": 204})
    store.delete(range(0, 150))  # a member's messages deleted: their words leave the kept counts at once
    assert "vault" not in store._counts
    assert counted_words(store, "the vault?") == (["vault"], {"vault": 54})
    assert counted_words(store, "the vault?") == (["vault"], {"vault": 54})  # held by too few to be kept


def test_a_kept_count_leaves_once_the_store_moved_past_it_whichever_process_changed_it(store):
    from indexes.store import MessageStore

    store.upsert([message(i, f"the quintar vault opens at dawn, note {i}") for i in range(200)])
    assert counted_words(store, "the vault?") == (["vault"], {"vault": 200}) and "vault" in store._counts
    other = MessageStore(store.path)  # another process: the bot's own store is not told
    try:
        other.delete(range(0, 190))
    finally:
        other.close()
    assert "vault" in store._counts
    counted_words(store, "a blorp?")  # any question: the count the store moved past is dropped
    assert "vault" not in store._counts
    assert counted_words(store, "the vault?") == (["vault"], {"vault": 10})


def test_the_number_of_messages_is_kept_until_the_store_has_changed_by_a_percent_of_it(store):
    store.upsert([message(i, f"the quintar vault opens at dawn, note {i}") for i in range(200)])

    def counted(question):
        """How many times the question counted the stored messages, and the number it used."""
        statements: list[str] = []
        store.db.set_trace_callback(statements.append)
        try:
            asked = store.lexical_query(question)
        finally:
            store.db.set_trace_callback(None)
        return statements.count("SELECT COUNT(*) FROM messages"), asked.documents

    assert counted("the vault?") == (1, 200)
    assert counted("a blorp?") == (0, 200)  # nothing changed: the kept number is exact
    store.upsert([message(300, "the vault is shut")])  # one change, within a percent of 200: kept
    assert counted("the vault?") == (0, 200)
    store.upsert([message(301, "the vault is open"), message(302, "the vault is locked")])
    assert counted("the vault?") == (1, 203)
    store.delete([301])  # a deletion: counted anew at the next question
    assert counted("the vault?") == (1, 202)


def test_the_lexical_search_runs_while_chroma_searches(store, tmp_path, embed_model, monkeypatch):
    store.upsert([message(i, f"the quintar vault opens at dawn, note {i}") for i in range(5)])
    index = LoreIndex(store, chroma_client(tmp_path / "chroma"), embed_model)
    index.rebuild()
    counting = threading.Event()
    real_query, real_nearest = store.lexical_query, WeightedRetriever._nearest
    monkeypatch.setattr(store, "lexical_query", lambda text: (counting.set(), real_query(text))[1])
    overlapped = []

    def nearest(retriever, collection, vector, where):  # waits until SQLite's search has begun: only one beside it can
        overlapped.append(counting.wait(timeout=10))
        return real_nearest(retriever, collection, vector, where)

    monkeypatch.setattr(WeightedRetriever, "_nearest", nearest)
    hits = WeightedRetriever(index, RetrievalWeights(), top_k=3, now=NOW).retrieve("when does the quintar vault open?")
    assert overlapped == [True]
    assert len(hits) == 3 and all(hit.node.metadata["scores"]["lexical"] > 0 for hit in hits)


def test_a_forked_process_searches_on_a_thread_of_its_own():
    from indexes import vector

    assert vector._LEXICAL.submit(lambda: 1).result(timeout=10) == 1  # the parent's thread is up, and idle
    child = os.fork()
    if child == 0:  # the child has no such thread: its search runs on a new one, or never
        try:
            os._exit(0 if vector._LEXICAL.submit(lambda: 1).result(timeout=10) == 1 else 1)
        except BaseException:
            os._exit(1)
    deadline = time.monotonic() + 60
    while (ended := os.waitpid(child, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    if ended[0] == 0:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
    assert ended[0] == child and os.waitstatus_to_exitcode(ended[1]) == 0


def test_a_channels_common_words_are_told_from_its_rare_ones(store):
    # The channel's own topic ("Quintar", in a quarter of its messages) says little about which message is meant.
    store.upsert([message(i, f"the Quintar vault opens at dawn, note {i}") for i in range(10)])
    store.upsert([message(100 + i, f"gm, anyone around? {i}") for i in range(29)])
    store.upsert([message(200, "return the excess to the treasury, pool_hash is in the readme")])
    assert store.common_words({"quintar", "treasury", "vault"}) == {"quintar", "vault"}
    assert store.common_words({"quintar_hash"}) == set()  # read as two words: one of them is rare
    assert store.common_words({"quintar_vault"}) == {"quintar_vault"}
    assert store.common_words({"quintar"}, share=0.5) == set()
    assert store.common_words(set()) == set()


def test_the_grounding_of_replies_reads_the_channels_common_words_from_its_store(
    store, tmp_path, embed_model, settings
):
    from app.runtime import lore_grounding

    store.upsert([message(i, f"the Quintar vault opens at dawn, note {i}") for i in range(10)])
    store.upsert([message(100 + i, f"gm, anyone around? {i}") for i in range(29)])
    store.upsert([message(200, "return the excess to the treasury")])
    grounding = lore_grounding(settings, LoreIndex(store, chroma_client(tmp_path / "chroma"), embed_model))
    assert grounding.common is not None and grounding.common({"quintar", "treasury"}) == {"quintar"}
    assert grounding.min_score == settings.GROUNDING_MIN_SCORE
