"""Lexical search over the stored messages: SQLite FTS5, ranked by BM25, inside the store's file.

Dense retrieval misses the exact terms a member types: file names, contract names, numbers, product
names. The full-text index finds them, and the retriever fuses both (indexes.vector.WeightedRetriever).

It is an external-content FTS5 table over `messages.content`, kept in step by triggers in the
transaction that changed the message: it never disagrees with the store after a crash, and a message
deleted or edited in the store leaves it at once. FTS5 records a deletion as a marker until its
segments are merged, so `MessageStore.scrub` merges them (`optimize`): no deleted word stays in the
file. Private-thread messages are found only by a search made in their own thread, as in the
vector index.
"""

from __future__ import annotations

import math
import re
import sqlite3
from collections import OrderedDict
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from types import MappingProxyType

FTS_TABLE = "messages_fts"
TOKENIZE = "porter unicode61 remove_diacritics 2"  # how the words of a message are read: the index's and the coverage's
STATEMENTS = (
    f"""CREATE VIRTUAL TABLE IF NOT EXISTS {FTS_TABLE} USING fts5(
        content, content='messages', content_rowid='id', tokenize='{TOKENIZE}')""",
    f"""CREATE TRIGGER IF NOT EXISTS messages_fts_insert AFTER INSERT ON messages BEGIN
        INSERT INTO {FTS_TABLE}(rowid, content) VALUES (new.id, new.content);
    END""",
    f"""CREATE TRIGGER IF NOT EXISTS messages_fts_delete AFTER DELETE ON messages BEGIN
        INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, content) VALUES ('delete', old.id, old.content);
    END""",
    f"""CREATE TRIGGER IF NOT EXISTS messages_fts_update AFTER UPDATE OF content ON messages BEGIN
        INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, content) VALUES ('delete', old.id, old.content);
        INSERT INTO {FTS_TABLE}(rowid, content) VALUES (new.id, new.content);
    END""",
)
MAX_TERMS = 16
COMMON_SHARE = 0.05  # a word in more than this share of the messages is left out of the search...
COMMON_FLOOR = 500  # ... when it is in more than this many: a small channel's search keeps every word
COMMON_SCAN = 1000  # a question of common words only: its rarest word, in this many of the newest messages
KEPT_FLOOR = 100  # a word held by at least this many messages has its count kept between questions (Counts)...
KEPT_DRIFT = 0.01  # ... used while the store changed by at most this share of the count since it was made
KEPT_WORDS = 1024
RARE_HOLDERS = 50  # a word held by at most this many messages is rare: `rare_holders` reads all its holders
# A figure with its separators ("60,500", "1.5") or a word, with dots inside it ("NextGenCore.sol"):
# quoted, each is a phrase of FTS5 tokens, so "60,500" matches "$60,500" and not every "500".
_TERM = re.compile(r"\d+(?:[.,]\d+)+|[^\W_]+(?:\.[^\W_]+)*")
# Words that say nothing about which message is meant; BM25's IDF would weigh them down anyway, but
# each one matches most of the channel and makes the search slow.
STOPWORDS = frozenset(
    """a about after all also am an and any are as at be been before but by can could did do does doing
    for from get got had has have he her here hey hi his how i if in into is it its just know let like
    me my no not now of on or our out please she should so some tell than that the their them then
    there these they this those to too up us was we were what when where which who whom why will with
    would yes you your don doesn isn ll re ve""".split()
)


def query_terms(text: str) -> list[str]:
    """The words of a question worth searching for: no stopwords, no single letters, each once.

    "what's the deadline for NextGenCore.sol?" -> ["deadline", "nextgencore.sol"].
    """
    terms: list[str] = []
    for match in _TERM.finditer(text.lower()):
        term = match.group()
        if term in STOPWORDS or (len(term) < 2 and not term.isdigit()) or term in terms:
            continue
        terms.append(term)
    return terms[:MAX_TERMS]


def fts_query(terms: list[str]) -> str:
    """An FTS5 query matching any of the terms; each is quoted, so no member's text is read as syntax."""
    return " OR ".join('"' + term.replace('"', '""') + '"' for term in terms)


@dataclass(frozen=True)
class Query:
    """A question's search terms, with how many stored messages hold each and how many there are.

    Counted once per question, for the search and the coverage both.
    """

    terms: tuple[str, ...]
    counts: Mapping[str, int]
    documents: int


class Counts:
    """How many messages hold each common word, kept between questions (one per store, used under its lock).

    A common word's count reads its whole list of messages, thousands of them in a large channel, on every
    question that has it. Kept with the store's change number (`IndexLog.last_change`: every insert, edit
    or deletion of a message logs at least one change), a count is used again while the store changed by at
    most KEPT_DRIFT of it since: each change moves it by one at most, so BM25's weight for the word moves
    by less than a percent; when nothing changed, it is exact. Only words held by at least KEPT_FLOOR
    messages are kept (no member's rare word stays here), the KEPT_WORDS most recently asked; a count the
    store has moved past is dropped at the next question, whichever process changed the store, so a word
    whose messages were deleted leaves here too (and at once when this store deleted them: `clear`).
    """

    def __init__(self, size: int = KEPT_WORDS) -> None:
        self._kept: OrderedDict[str, tuple[int, int]] = OrderedDict()  # word -> (count, change number)
        self._size = size
        self._documents: tuple[int, int] | None = None  # (how many messages, change number)

    def documents(self, db: sqlite3.Connection, change: int) -> int:
        """How many messages the store holds, the store being at change number `change`.

        Counting them reads a whole index of the table (0.7 ms at 100,000 messages, on the lexical search's
        path, which outlasts Chroma's query there); kept as a word's count is, within KEPT_DRIFT of it: a
        question's IDF weights move by under a percent. Counted anew once the store moved further, and when
        nothing changed it is exact.
        """
        kept = self._documents
        if kept is None or not 0 <= change - kept[1] <= KEPT_DRIFT * kept[0]:
            kept = self._documents = (documents(db), change)
        return kept[0]

    def __call__(self, db: sqlite3.Connection, terms: list[str], change: int) -> dict[str, int]:
        """How many messages hold each term, the store being at change number `change`."""
        stale = [word for word, (count, made) in self._kept.items() if not 0 <= change - made <= KEPT_DRIFT * count]
        for word in stale:
            del self._kept[word]
        counts = {}
        for term in terms:
            kept = self._kept.get(term)
            if kept:
                self._kept.move_to_end(term)
                counts[term] = kept[0]
                continue
            counts[term] = count = document_counts(db, [term])[term]
            if count >= KEPT_FLOOR:
                self._kept[term] = (count, change)
                if len(self._kept) > self._size:
                    self._kept.popitem(last=False)
        return counts

    def __contains__(self, word: str) -> bool:
        return word in self._kept

    def clear(self) -> None:
        self._kept.clear()
        self._documents = None


def query(db: sqlite3.Connection, text: str, counts: Counts | None = None, change: int = 0) -> Query:
    """A question's terms and their counts (`counts`: the store's kept ones, at change number `change`)."""
    terms = query_terms(text)
    if counts is None:
        return Query(tuple(terms), MappingProxyType(document_counts(db, terms)), documents(db))
    return Query(tuple(terms), MappingProxyType(counts(db, terms, change)), counts.documents(db, change))


def search(db: sqlite3.Connection, asked: Query, limit: int, channel_id: int | None = None) -> list[tuple[int, float]]:
    """(message id, BM25 score, higher is better) of the best `limit` messages holding any term.

    A word in more than COMMON_SHARE of the stored messages (and more than COMMON_FLOOR of them) is left
    out of the search, never out of `coverage`, unless every word is: then the rarest one is searched, in the
    newest COMMON_SCAN messages that hold it. BM25 weighs such a word near nothing, yet ranking every message
    that holds it is most of the search's time (bench retrieval at 100,000 messages: 56 ms -> 4 ms; and a
    question of common words only, whose rarest word thousands of messages hold, 17 -> 8 ms at P95).
    """
    counts = asked.counts
    common = max(COMMON_FLOOR, COMMON_SHARE * asked.documents)
    found = [term for term in asked.terms if counts[term]]
    terms = [term for term in found if counts[term] <= common]
    newest = not terms  # only common words: the rarest one, in the newest messages that hold it
    terms = terms or sorted(found, key=counts.get)[:1]
    if not terms or limit <= 0:
        return []
    scope, scoped = _seen_from(channel_id)
    matching = (
        f"SELECT m.id AS id, -bm25({FTS_TABLE}) AS score FROM {FTS_TABLE} JOIN messages m ON m.id = {FTS_TABLE}.rowid "
        f"WHERE {FTS_TABLE} MATCH ? AND ({scope})"
    )
    if newest:  # ids are in time order (Discord's snowflakes; indexes.exports.common.synthetic_message_id)
        matching = f"SELECT * FROM ({matching} ORDER BY {FTS_TABLE}.rowid DESC LIMIT {COMMON_SCAN})"
    args: tuple = (fts_query(terms), *scoped, limit)
    rows = db.execute(f"{matching} ORDER BY score DESC LIMIT ?", args)
    return [(int(message_id), float(score)) for message_id, score in rows]


def _seen_from(channel_id: int | None) -> tuple[str, tuple]:
    """The SQL condition (on `messages m`) and its arguments for what a search may see: public messages, and a private
    thread's own when made in it."""
    return ("m.private = 0 OR m.channel_id = ?", (channel_id,)) if channel_id else ("m.private = 0", ())


def rare_holders(
    db: sqlite3.Connection,
    asked: Query,
    limit: int,
    channel_id: int | None = None,
    leaving: Collection[int] = (),
    longer_than: int = 0,
) -> list[int]:
    """The `limit` messages longer than `longer_than` bytes holding most of the question's rare words (each held by
    at most RARE_HOLDERS messages; weighted by idf, as `coverage` weighs them), at least two of them, but those in
    `leaving`, best first.

    BM25 weighs a long message down for its length: a post holding the question's rarest words far apart, an
    awards list ending in "High risk findings: 4 unique (376 total)" to "how many unique high and medium
    findings", ranks below every short message holding one of them (`search`). Read whole, it is found as the
    short ones are; `coverage` on its parts then says whether it holds them together.
    """
    weights = {term: idf for term, idf in idfs(asked).items() if asked.counts[term] <= RARE_HOLDERS}
    if len(weights) < 2 or limit <= 0:
        return []
    scope, scoped = _seen_from(channel_id)
    holding = (
        f"SELECT m.id FROM {FTS_TABLE} JOIN messages m ON m.id = {FTS_TABLE}.rowid "
        f"WHERE {FTS_TABLE} MATCH ? AND ({scope}) AND length(CAST(m.content AS BLOB)) > {int(longer_than)}"
    )
    held: dict[int, float] = {}
    words: dict[int, int] = {}
    for term, idf in weights.items():
        for (message_id,) in db.execute(holding, (fts_query([term]), *scoped)):
            if message_id not in leaving:
                held[message_id] = held.get(message_id, 0.0) + idf
                words[message_id] = words.get(message_id, 0) + 1
    return sorted((m for m in held if words[m] >= 2), key=lambda m: (held[m], m), reverse=True)[:limit]


def documents(db: sqlite3.Connection) -> int:
    """How many messages the full-text index holds: every stored one (counted on the store's table, which is
    cheaper than counting the full-text index)."""
    return db.execute("SELECT COUNT(*) FROM messages").fetchone()[0]


def document_counts(db: sqlite3.Connection, terms: list[str]) -> dict[str, int]:
    """How many messages hold each term."""
    query = f"SELECT COUNT(*) FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH ?"
    return {term: db.execute(query, (fts_query([term]),)).fetchone()[0] for term in terms}


def coverage(asked: Query, texts: Mapping[int, str]) -> dict[int, float]:
    """How much of the question's words each message (id -> its text) holds, weighted by rarity: 0 (none) to 1 (all).

    sum of idf(term) over the terms a message holds / sum over the terms any message holds. Unlike a
    BM25 score it means the same in every query: a message with the one rare word of the question
    ("NextGenCore.sol", "60,500") scores high, one that shares only common words scores low.

    The messages' words are read as the store's full-text index reads them (same tokenizer, stemming and
    phrases), in a scratch in-memory table of these messages alone: looking each word up in the store's
    index reads its whole list of messages, a common word's too (bench retrieval at 100,000 messages:
    14 ms -> under 1 ms a question: 0.6 ms, and 0.24 ms to open the scratch table).
    """
    if not asked.terms or not texts:
        return {}
    held = dict.fromkeys(texts, 0.0)
    weights = idfs(asked)
    with _scratch(texts) as scratch:
        for term, idf in weights.items():
            holding = scratch.execute("SELECT rowid FROM scratch WHERE scratch MATCH ?", (fts_query([term]),))
            for (message_id,) in holding:
                held[message_id] += idf
    weight = sum(weights.values())
    return {message_id: value / weight for message_id, value in held.items()} if weight else {}


def idfs(asked: Query) -> dict[str, float]:
    """The weight of each of the question's terms in `coverage` (BM25's idf); none for a word no message has, which
    says nothing about which message is meant."""
    total = asked.documents
    weights = {}
    for term, count in asked.counts.items():
        if count:
            count = min(count, total)  # a kept count may be a percent high, after another process's deletions (Counts)
            weights[term] = math.log(1 + (total - count + 0.5) / (count + 0.5))
    return weights


def one_word(asked: Query) -> float:
    """The most `coverage` a message holding one of the question's words can have: its rarest word's share (1.0 for a
    question of one word)."""
    weights = idfs(asked)
    total = sum(weights.values())
    return max(weights.values()) / total if total else 1.0


@contextmanager
def _scratch(texts: Mapping[int, str]) -> Iterator[sqlite3.Connection]:
    """A new in-memory full-text table `scratch` holding `texts` (id -> text), closed when the block ends.

    Never kept for the next question: FTS5 keeps a deleted row's words in its segments until they are
    merged, so an emptied table would still hold members' words.
    """
    db = sqlite3.connect(":memory:", isolation_level=None)
    try:
        db.execute(f"CREATE VIRTUAL TABLE scratch USING fts5(content, tokenize='{TOKENIZE}')")
        with db:  # one transaction: a commit per row costs four times the rows' words (1.5 -> 0.4 ms for 40)
            db.execute("BEGIN")
            db.executemany("INSERT INTO scratch(rowid, content) VALUES (?, ?)", texts.items())
        yield db
    finally:
        db.close()


def create(db: sqlite3.Connection) -> None:
    """Create the table and its triggers, filled from the stored messages, in the caller's transaction."""
    if db.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (FTS_TABLE,)).fetchone() is not None:
        return
    for statement in STATEMENTS:
        db.execute(statement)
    db.execute(f"INSERT INTO {FTS_TABLE}({FTS_TABLE}) VALUES ('rebuild')")


def merge(db: sqlite3.Connection) -> None:
    """Merge the table's segments, so that the terms of deleted and edited messages leave the file."""
    db.execute(f"INSERT INTO {FTS_TABLE}({FTS_TABLE}) VALUES ('optimize')")
