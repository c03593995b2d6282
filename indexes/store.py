"""SQLite message store: the source of truth the lore index is derived from.

Writes are idempotent by message id: importing the same message twice keeps one row, and a newer
version (an edit) replaces the content; an older version never overwrites a newer one. Imports go
through a staging table (`stage()`) and are merged in one short transaction, so a bad file leaves
the store as it was and live writes are not held up while a large export is read.

The index is derived from the store, and the store says what the index still has to do: every
insert, change or deletion of a message appends its id to `index_log`, by SQLite triggers, in the
transaction that made it. A change whose embedding carries another message's words (a reply
embedded with the thread it answers) logs those replies too. Each index collection keeps a cursor
(`index_collections.seq`): what is after it is pending, and stays pending across a crash at any
point until the index has applied it (see indexes.vector.LoreIndex.sync). The log holds ids only.

`seen` holds, per channel, the newest message id read from Discord (live, catch-up, backfill, or an
export with Discord's own ids), written in the same transaction as the message: a restart catches
up from there, never from an id derived from an export's dates. Members who opted out are recorded
in `opted_out`; their messages are never written again.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import islice
from pathlib import Path

from indexes import lexical
from indexes.disk import disk_errors
from indexes.index_log import IndexLog
from indexes.records import StoredMessage, snowflake_at

logger = logging.getLogger(__name__)

_MESSAGE_COLUMNS_DDL = """
    id INTEGER PRIMARY KEY,
    channel_id INTEGER NOT NULL,
    guild_id INTEGER,
    author_id INTEGER NOT NULL,
    author_name TEXT NOT NULL,
    author_display TEXT NOT NULL DEFAULT '',
    author_is_bot INTEGER NOT NULL DEFAULT 0,
    type TEXT NOT NULL DEFAULT 'Default',
    timestamp TEXT NOT NULL,
    edited_at TEXT,
    content TEXT NOT NULL,
    reply_to INTEGER,
    is_pinned INTEGER NOT NULL DEFAULT 0,
    reactions TEXT NOT NULL DEFAULT '{}',
    reaction_count INTEGER NOT NULL DEFAULT 0,
    mentions TEXT NOT NULL DEFAULT '[]',
    attachments TEXT NOT NULL DEFAULT '[]',
    lore_score REAL NOT NULL DEFAULT 0,
    lore_reasons TEXT NOT NULL DEFAULT '[]',
    stored_at REAL NOT NULL DEFAULT 0,
    discord_id INTEGER NOT NULL DEFAULT 0,
    private INTEGER NOT NULL DEFAULT 0,
    licensed INTEGER NOT NULL DEFAULT 0
"""
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS messages ({_MESSAGE_COLUMNS_DDL});
CREATE INDEX IF NOT EXISTS messages_channel_time ON messages (channel_id, timestamp);
CREATE INDEX IF NOT EXISTS messages_reply_to ON messages (reply_to);
CREATE INDEX IF NOT EXISTS messages_author ON messages (author_id);
CREATE INDEX IF NOT EXISTS messages_private ON messages (channel_id) WHERE private = 1;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS opted_out (user_id INTEGER PRIMARY KEY, since TEXT NOT NULL, member INTEGER);
CREATE TABLE IF NOT EXISTS index_log (seq INTEGER PRIMARY KEY AUTOINCREMENT, message_id INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS index_collections (
    number INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT UNIQUE NOT NULL, seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS seen (channel_id INTEGER PRIMARY KEY, message_id INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS consent (
    user_id INTEGER PRIMARY KEY, given INTEGER NOT NULL, source TEXT NOT NULL, since TEXT NOT NULL
);
"""
# The replies whose embedding carries a message's words (up to REPLY_THREAD_DEPTH = 3 levels down;
# SQLite allows no WITH clause inside a trigger, hence the nesting).
_REPLIES_BELOW = """
    SELECT id FROM messages WHERE reply_to = {id}
    UNION SELECT id FROM messages WHERE reply_to IN (SELECT id FROM messages WHERE reply_to = {id})
    UNION SELECT id FROM messages WHERE reply_to IN (
        SELECT id FROM messages WHERE reply_to IN (SELECT id FROM messages WHERE reply_to = {id}))
"""
TRIGGERS = f"""
CREATE TRIGGER IF NOT EXISTS messages_log_insert AFTER INSERT ON messages BEGIN
    INSERT INTO index_log(message_id) VALUES (new.id);
END;
CREATE TRIGGER IF NOT EXISTS messages_log_update AFTER UPDATE ON messages BEGIN
    INSERT INTO index_log(message_id) VALUES (new.id);
END;
CREATE TRIGGER IF NOT EXISTS messages_log_edit AFTER UPDATE OF content ON messages
WHEN old.content IS NOT new.content BEGIN
    INSERT INTO index_log(message_id) {_REPLIES_BELOW.format(id="new.id")};
END;
CREATE TRIGGER IF NOT EXISTS messages_log_delete AFTER DELETE ON messages BEGIN
    INSERT INTO index_log(message_id) VALUES (old.id);
    INSERT INTO index_log(message_id) {_REPLIES_BELOW.format(id="old.id")};
END;
"""
_COLUMNS = (
    "id, channel_id, guild_id, author_id, author_name, author_display, author_is_bot, type, "
    "timestamp, edited_at, content, reply_to, is_pinned, reactions, reaction_count, mentions, "
    "attachments, lore_score, lore_reasons, stored_at, discord_id, private, licensed"
)
# Merging a version of a message that is already stored: a newer edit replaces the content;
# reactions only grow, a pin stays, a nickname fills in. Anything else leaves the row untouched,
# so two exports of the same message in different formats never flip it back and forth.
_NEWER = "COALESCE(excluded.edited_at, '') > COALESCE(messages.edited_at, '')"
_ON_CONFLICT = f"""
ON CONFLICT(id) DO UPDATE SET
    content = CASE WHEN {_NEWER} THEN excluded.content ELSE messages.content END,
    edited_at = CASE WHEN {_NEWER} THEN excluded.edited_at ELSE messages.edited_at END,
    reactions = CASE WHEN excluded.reaction_count > messages.reaction_count THEN excluded.reactions ELSE messages.reactions END,
    reaction_count = MAX(excluded.reaction_count, messages.reaction_count),
    is_pinned = MAX(excluded.is_pinned, messages.is_pinned),
    author_display = CASE WHEN messages.author_display = '' THEN excluded.author_display ELSE messages.author_display END,
    discord_id = MAX(excluded.discord_id, messages.discord_id),
    licensed = MAX(excluded.licensed, messages.licensed),
    stored_at = excluded.stored_at
WHERE {_NEWER} OR excluded.reaction_count > messages.reaction_count OR excluded.is_pinned > messages.is_pinned
    OR (messages.author_display = '' AND excluded.author_display != '') OR excluded.licensed > messages.licensed
"""  # noqa: E501
_SEEN_CONFLICT = "ON CONFLICT(channel_id) DO UPDATE SET message_id = MAX(message_id, excluded.message_id)"
_UPSERT = f"INSERT INTO messages ({_COLUMNS}) VALUES ({', '.join('?' * 23)}) {_ON_CONFLICT}"
PAGE = 2000


def _utc(moment: datetime) -> str:
    """ISO 8601 in UTC, so that text order is time order."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat()


def _row(m: StoredMessage, stored_at: float) -> tuple:
    return (
        m.id,
        m.channel_id,
        m.guild_id,
        m.author_id,
        m.author_name,
        m.author_display,
        int(m.author_is_bot),
        m.type,
        _utc(m.timestamp),
        _utc(m.edited_at) if m.edited_at else None,
        m.content,
        m.reply_to,
        int(m.is_pinned),
        json.dumps(m.reactions, ensure_ascii=False),
        m.reaction_count,
        json.dumps(m.mentions),
        json.dumps(m.attachments, ensure_ascii=False),
        m.lore_score,
        json.dumps(m.lore_reasons),
        stored_at,
        int(m.discord_id),
        int(m.private),
        int(m.licensed),
    )


def _json(text: str):
    """A JSON column's value. Most messages' reactions, mentions, attachments and lore reasons are empty, which need
    no parsing on every message read back."""
    return {} if text == "{}" else [] if text == "[]" else json.loads(text)


def _message(row: sqlite3.Row) -> StoredMessage:
    return StoredMessage(
        id=row["id"],
        channel_id=row["channel_id"],
        guild_id=row["guild_id"],
        author_id=row["author_id"],
        author_name=row["author_name"],
        author_display=row["author_display"],
        author_is_bot=bool(row["author_is_bot"]),
        type=row["type"],
        timestamp=datetime.fromisoformat(row["timestamp"]),
        edited_at=datetime.fromisoformat(row["edited_at"]) if row["edited_at"] else None,
        content=row["content"],
        reply_to=row["reply_to"],
        is_pinned=bool(row["is_pinned"]),
        reactions=_json(row["reactions"]),
        mentions=_json(row["mentions"]),
        attachments=_json(row["attachments"]),
        lore_score=row["lore_score"],
        lore_reasons=_json(row["lore_reasons"]),
        discord_id=bool(row["discord_id"]),
        private=bool(row["private"]),
        licensed=bool(row["licensed"]),
    )


@dataclass
class MergeResult:
    """What merging a staged export changed in the store."""

    staged: int = 0
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    opted_out: int = 0


class Stage:
    """A temporary table an export is read into before it is merged (see MessageStore.stage)."""

    def __init__(self, store: MessageStore, name: str) -> None:
        self.store, self.name, self.added = store, name, 0

    def add(self, messages: Iterable[StoredMessage]) -> None:
        now = time.time()
        rows = [_row(m, now) for m in messages]
        sql = (
            f"INSERT INTO temp.{self.name} ({_COLUMNS}) VALUES ({', '.join('?' * 23)}) "
            f"{_ON_CONFLICT.replace('messages.', f'{self.name}.')}"
        )
        with self.store._lock, disk_errors(self.store.path):
            self.store._db.executemany(sql, rows)
        self.added += len(rows)

    def merge(self, seen: bool = False) -> MergeResult:
        """Write the staged messages into the store in one transaction; returns the counts.

        `seen`: the ids are Discord's own (not derived from dates), so the newest of each channel
        counts as read from Discord (see MessageStore.seen).
        """
        stage, now = f"temp.{self.name}", time.time()
        with self.store.transaction() as db:
            if seen:
                db.execute(
                    f"INSERT INTO seen SELECT channel_id, MAX(id) FROM {stage} WHERE channel_id != 0 AND id <= ? "
                    f"GROUP BY channel_id {_SEEN_CONFLICT}",
                    (snowflake_at(datetime.now(timezone.utc)),),
                )
            db.execute(f"UPDATE {stage} SET stored_at = ?", (now,))
            result = MergeResult(staged=db.execute(f"SELECT COUNT(*) FROM {stage}").fetchone()[0])
            result.opted_out = db.execute(
                f"SELECT COUNT(*) FROM {stage} WHERE author_id IN (SELECT user_id FROM opted_out)"
            ).fetchone()[0]
            result.new = db.execute(
                f"SELECT COUNT(*) FROM {stage} s WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.id = s.id) "
                "AND s.author_id NOT IN (SELECT user_id FROM opted_out)"
            ).fetchone()[0]
            written = db.execute(  # rowcount leaves out the index log's rows, which triggers write
                f"INSERT INTO messages ({_COLUMNS}) SELECT {_COLUMNS} FROM {stage} "
                f"WHERE author_id NOT IN (SELECT user_id FROM opted_out) {_ON_CONFLICT}"
            ).rowcount
        result.updated = written - result.new
        result.unchanged = result.staged - result.opted_out - written
        return result


class MessageStore:
    """Thread-safe access to the SQLite message store."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.RLock()
        with disk_errors(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=60)
            try:
                self._db.row_factory = sqlite3.Row
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.execute(
                    "PRAGMA secure_delete=ON"
                )  # deleted and overwritten words are zeroed, not left in free pages
                self._migrate()
                self._db.executescript(SCHEMA)
                self._db.executescript(TRIGGERS)
                self._db.execute("CREATE INDEX IF NOT EXISTS messages_stored_at ON messages (stored_at)")
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    lexical.create(self._db)
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
            except BaseException:
                self._db.close()
                raise
        self._stages = 0
        self.index_log = IndexLog(self)
        self._counts = lexical.Counts()

    @property
    def lock(self) -> threading.RLock:
        """Held around every use of the connection (helpers such as IndexLog take it too)."""
        return self._lock

    @property
    def db(self) -> sqlite3.Connection:
        return self._db

    def _migrate(self) -> None:
        """Bring a store made by an earlier version up to the current schema."""
        columns = {r[1] for r in self._db.execute("PRAGMA table_info(messages)")}
        if columns and "stored_at" not in columns:
            self._db.execute("ALTER TABLE messages ADD COLUMN stored_at REAL NOT NULL DEFAULT 0")
        for column in ("discord_id", "private", "licensed"):  # unknown for older rows: derived, public, not licensed
            if columns and column not in columns:
                self._db.execute(f"ALTER TABLE messages ADD COLUMN {column} INTEGER NOT NULL DEFAULT 0")
        opted_out = {r[1] for r in self._db.execute("PRAGMA table_info(opted_out)")}
        if opted_out and "member" not in opted_out:
            self._db.execute("ALTER TABLE opted_out ADD COLUMN member INTEGER")
        if columns and not list(self._db.execute("PRAGMA table_info(seen)")):
            # Before `seen` the catch-up started after the newest stored id; the best guess of what
            # Discord delivered is that, leaving out ids an export's dates put in the future.
            self._db.execute("CREATE TABLE seen (channel_id INTEGER PRIMARY KEY, message_id INTEGER NOT NULL)")
            self._db.execute(
                "INSERT INTO seen SELECT channel_id, MAX(id) FROM messages WHERE id <= ? GROUP BY channel_id",
                (snowflake_at(datetime.now(timezone.utc)),),
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One all-or-nothing write: rolled back if the block raises. Inside one, a nested call joins it."""
        with self._lock:
            if self._db.in_transaction:  # this thread's own (the lock is held): join it
                yield self._db
                return
            with disk_errors(self.path):
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                except BaseException:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise
                try:
                    self._db.execute("COMMIT")
                except BaseException:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise

    @contextmanager
    def stage(self) -> Iterator[Stage]:
        """A staging table for one export: fill it with `add`, then `merge`; dropped in any case."""
        with self._lock:
            self._stages += 1
            name = f"stage_{self._stages}"
            self._db.execute(f"CREATE TEMP TABLE {name} ({_MESSAGE_COLUMNS_DDL})")
        try:
            yield Stage(self, name)
        finally:
            with self._lock:
                try:
                    self._db.execute(f"DROP TABLE IF EXISTS temp.{name}")
                except sqlite3.Error as exc:  # the disk failing: the table goes with the connection anyway
                    logger.debug("staging table %s not dropped: %s", name, exc)

    def upsert(
        self, messages: Iterable[StoredMessage], meta: dict[str, str] | None = None, seen: tuple[int, int] | None = None
    ) -> int:
        """Insert or update messages by id in one transaction, with `meta` keys set in the same one.

        `seen`: (channel id, message id) of the newest message just read from Discord (stored here or
        left out by the filters); the channel's `seen` mark moves there in the same transaction.
        Messages of members who opted out are dropped. Returns how many rows changed.
        """
        now = time.time()
        with self.transaction() as db:
            opted_out = self._opted_out(db)
            rows = [_row(m, now) for m in messages if m.author_id not in opted_out]
            changed = db.executemany(_UPSERT, rows).rowcount if rows else 0  # the index log's rows not counted
            for key, value in (meta or {}).items():
                db.execute(
                    "INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    (key, value),
                )
            if seen is not None:
                db.execute(f"INSERT INTO seen VALUES (?, ?) {_SEEN_CONFLICT}", seen)
        return changed

    def mark_seen(self, channel_id: int, message_id: int) -> None:
        """A message read from Discord and left out by the filters still moves `seen` forward."""
        with self.transaction() as db:
            db.execute(f"INSERT INTO seen VALUES (?, ?) {_SEEN_CONFLICT}", (channel_id, message_id))

    def discord_messages(self, channel_id: int, low: int, high: int) -> dict[int, str]:
        """id -> content of a channel's messages with Discord's own ids between `low` and `high`."""
        sql = "SELECT id, content FROM messages WHERE channel_id = ? AND discord_id = 1 AND id BETWEEN ? AND ?"
        with self._lock:
            return dict(self._db.execute(sql, (channel_id, low, high)).fetchall())

    def seen(self, channel_id: int) -> int | None:
        """The newest message id of a channel read from Discord, or None if none was yet."""
        with self._lock:
            row = self._db.execute("SELECT message_id FROM seen WHERE channel_id = ?", (channel_id,)).fetchone()
        return row[0] if row else None

    def get(self, ids: Iterable[int]) -> dict[int, StoredMessage]:
        """The stored messages among `ids`, by id."""
        found: dict[int, StoredMessage] = {}
        wanted = list(dict.fromkeys(ids))
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            sql = f"SELECT {_COLUMNS} FROM messages WHERE id IN ({','.join('?' * len(chunk))})"
            with self._lock:
                found.update((row["id"], _message(row)) for row in self._db.execute(sql, chunk))
        return found

    def count(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM messages").fetchone()[0]

    def _select(self, where: str = "", args: tuple = ()) -> Iterator[StoredMessage]:
        """Rows oldest first, read in pages by keyset (bounded memory, each page under the lock)."""
        last: tuple = ("", -1)
        condition = f"({where}) AND " if where else ""
        while True:
            sql = (
                f"SELECT {_COLUMNS} FROM messages WHERE {condition}(timestamp, id) > (?, ?) "
                "ORDER BY timestamp, id LIMIT ?"
            )
            with self._lock:
                rows = self._db.execute(sql, (*args, *last, PAGE)).fetchall()
            yield from (_message(r) for r in rows)
            if len(rows) < PAGE:
                return
            last = (rows[-1]["timestamp"], rows[-1]["id"])

    def iter_messages(self, channel_id: int | None = None) -> Iterator[StoredMessage]:
        """All messages, oldest first (optionally of one channel), read page by page."""
        if channel_id is None:
            return self._select()
        return self._select("channel_id = ?", (channel_id,))

    def recent(self, channel_id: int, limit: int) -> list[StoredMessage]:
        """The newest `limit` messages of a channel, oldest first."""
        sql = f"SELECT {_COLUMNS} FROM messages WHERE channel_id = ? ORDER BY timestamp DESC, id DESC LIMIT ?"
        with self._lock:
            rows = self._db.execute(sql, (channel_id, limit)).fetchall()
        return [_message(r) for r in reversed(rows)]

    def following(self, message: StoredMessage, limit: int) -> list[StoredMessage]:
        """The next `limit` messages after `message` in its channel, oldest first."""
        sql = (
            f"SELECT {_COLUMNS} FROM messages WHERE channel_id = ? AND (timestamp, id) > (?, ?) "
            "ORDER BY timestamp, id LIMIT ?"
        )
        with self._lock:
            rows = self._db.execute(sql, (message.channel_id, _utc(message.timestamp), message.id, limit)).fetchall()
        return [_message(r) for r in rows]

    def replies_to(self, author_id: int, depth: int = 1) -> list[StoredMessage]:
        """Other authors' messages in a thread below one of this author's, at most `depth` replies down."""
        where = f"""author_id != ? AND id IN (
            WITH RECURSIVE below(id, depth) AS (
                SELECT id, 0 FROM messages WHERE author_id = ?
                UNION SELECT m.id, below.depth + 1 FROM messages m JOIN below ON m.reply_to = below.id
                WHERE below.depth < {int(depth)}
            ) SELECT id FROM below WHERE depth > 0)"""
        return list(self._select(where, (author_id, author_id)))

    def threads(self, messages: Iterable[StoredMessage], depth: int = 1) -> dict[int, list[tuple[int, str]]]:
        """For each reply among `messages`, what it answers: up to `depth` (id, words) of messages, the earliest first.

        A reply to a reply answers the whole exchange, and the question usually starts it. The walk
        stops at a message that is not stored (deleted, forgotten, or never imported).
        """
        above = {m.id: m.reply_to for m in messages if m.reply_to}
        found: dict[int, list[tuple[int, str]]] = {}
        for _ in range(depth):
            rows = self._links(above.values())
            for message_id, parent in list(above.items()):
                if parent not in rows:
                    del above[message_id]
                    continue
                content, above[message_id] = rows[parent]
                found.setdefault(message_id, []).insert(0, (parent, content))
                if above[message_id] is None:
                    del above[message_id]
        return found

    def _links(self, ids: Iterable[int]) -> dict[int, tuple[str, int | None]]:
        """(content, reply_to) of each stored message among `ids`."""
        wanted = list(dict.fromkeys(ids))
        found: dict[int, tuple[str, int | None]] = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT id, content, reply_to FROM messages WHERE id IN ({marks})"
            with self._lock:
                rows = self._db.execute(sql, chunk).fetchall()
            found.update((row["id"], (row["content"], row["reply_to"])) for row in rows)
        return found

    def reply_counts(self, ids: list[int] | None = None) -> dict[int, int]:
        """How many replies each message received (only the given messages, when ids are given)."""
        if ids is None:
            sql, args = "SELECT reply_to, COUNT(*) FROM messages WHERE reply_to IS NOT NULL GROUP BY reply_to", ()
        else:
            marks = ", ".join("?" * len(ids))
            sql, args = (
                f"SELECT reply_to, COUNT(*) FROM messages WHERE reply_to IN ({marks}) GROUP BY reply_to",
                tuple(ids),
            )
        with self._lock:
            return dict(self._db.execute(sql, args).fetchall())

    def set_lore(self, scores: list[tuple[float, list[str], int]]) -> None:
        """Store (score, reasons, id) lore classifications; the rows count as changed."""
        now = time.time()
        with self.transaction() as db:
            db.executemany(
                "UPDATE messages SET lore_score = ?, lore_reasons = ?, stored_at = ? WHERE id = ?",
                [(score, json.dumps(reasons), now, mid) for score, reasons, mid in scores],
            )

    # Opt-out and forgetting

    def _opted_out(self, db: sqlite3.Connection) -> set[int]:
        return {r[0] for r in db.execute("SELECT user_id FROM opted_out")}

    def opted_out(self) -> set[int]:
        """Every id recorded as opted out (Discord ids and those derived from members' names)."""
        with self._lock:
            return self._opted_out(self._db)

    def opted_out_members(self) -> int:
        """How many members opted out, each counted once however many ids they are known by."""
        with self._lock:
            return self._db.execute("SELECT COUNT(DISTINCT COALESCE(member, user_id)) FROM opted_out").fetchone()[0]

    def names_of(self, user_id: int) -> set[str]:
        """The usernames and display names a member's stored messages carry."""
        sql = "SELECT DISTINCT author_name, author_display FROM messages WHERE author_id = ?"
        with self._lock:
            return {n for row in self._db.execute(sql, (user_id,)) for n in row if n}

    def forget(self, user_id: int, member: int | None = None) -> int:
        """Delete the messages under an id and record the opt-out, in one transaction; returns the count.

        `member` is the Discord id of the member an id derived from a name belongs to (the same
        member may be known under several ids), so opt-outs are counted per member.
        """
        with self.transaction() as db:
            deleted = db.execute("DELETE FROM messages WHERE author_id = ?", (user_id,)).rowcount
            db.execute(
                "INSERT INTO opted_out(user_id, since, member) VALUES(?, ?, ?) ON CONFLICT(user_id) DO NOTHING",
                (user_id, datetime.now().astimezone().isoformat(timespec="seconds"), member or user_id),
            )
        self.scrub()
        return deleted

    def delete(self, ids: Iterable[int]) -> list[int]:
        """Delete messages by id (deleted on Discord, or no longer kept); returns the ids that were stored."""
        wanted = list(dict.fromkeys(ids))
        deleted: list[int] = []
        with self.transaction() as db:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                marks = ",".join("?" * len(chunk))
                deleted += [r[0] for r in db.execute(f"SELECT id FROM messages WHERE id IN ({marks})", chunk)]
                db.execute(f"DELETE FROM messages WHERE id IN ({marks})", chunk)
        if deleted:
            self.scrub()
        return deleted

    def has_private(self) -> bool:
        """Whether any message of a private thread is stored (a partial index answers it at once)."""
        with self._lock:
            return self._db.execute("SELECT 1 FROM messages WHERE private = 1 LIMIT 1").fetchone() is not None

    def lexical_query(self, text: str) -> lexical.Query:
        """A question's search terms, counted once for `lexical_search` and `lexical.coverage` both."""
        with self._lock:
            return lexical.query(self._db, text, self._counts, self.index_log.last_change())

    def common_words(self, words: Iterable[str], share: float = lexical.COMMON_SHARE) -> set[str]:
        """The words held by more than `share` of the stored messages: a channel's own topic ("Curves" in the
        Curves audit's channel), which says little about which message is meant. A word the full-text index
        reads as several ("pool_init_code_hash") is common when each of them is."""
        words = [w for w in words if w]
        if not words:
            return set()
        asked = self.lexical_query(" ".join(words))
        most = share * asked.documents
        common = set()
        for word in words:
            terms = lexical.query_terms(word)
            if terms and all(asked.counts.get(term, 0) > most for term in terms):
                common.add(word)
        return common

    def lexical_search(
        self, text: str | lexical.Query, limit: int, channel_id: int | None = None
    ) -> list[tuple[int, float]]:
        """(message id, BM25 score) of the messages holding the question's words (indexes.lexical)."""
        with self._lock:
            asked = self.lexical_query(text) if isinstance(text, str) else text
            return lexical.search(self._db, asked, limit, channel_id)

    def rare_holders(
        self,
        asked: lexical.Query,
        limit: int,
        channel_id: int | None = None,
        leaving: Collection[int] = (),
        longer_than: int = 0,
    ) -> list[int]:
        """The messages longer than `longer_than` bytes holding most of the question's rare words, however BM25
        weighs their length (indexes.lexical)."""
        with self._lock:
            return lexical.rare_holders(self._db, asked, limit, channel_id, leaving, longer_than)

    def ids_before(self, moment: datetime) -> list[int]:
        """The ids of the messages posted before `moment`."""
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT id FROM messages WHERE timestamp < ?", (_utc(moment),))]

    def authored_by(self, author_id: int, limit: int) -> list[StoredMessage]:
        """An author's oldest `limit` messages."""
        return list(islice(self._select("author_id = ?", (author_id,)), limit))

    def count_by(self, author_id: int) -> int:
        """How many messages of an author are stored."""
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM messages WHERE author_id = ?", (author_id,)).fetchone()[0]

    def scrub(self) -> None:
        """Words deleted or overwritten leave the lexical index and the write-ahead log too.

        secure_delete zeroes freed pages in the file; the lexical index's segments are merged so that
        no deleted term stays in them (indexes.lexical). SQLite keeps the pages a transaction changed
        in the WAL file until a checkpoint copies them back and the file is truncated; until then a
        deleted message's old page could be read there. The common words' kept counts are dropped
        (indexes.lexical.Counts).
        """
        with self._lock:
            self._counts.clear()  # the kept counts of common words: one may be a deleted message's
            try:
                lexical.merge(self._db)  # one statement: its own transaction
                busy = self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            except sqlite3.Error as exc:
                logger.warning("the store's lexical index was not merged or its write-ahead log not truncated: %s", exc)
                return
        if busy:  # another process reads: its next write's checkpoint completes it
            logger.info("the store's write-ahead log is in use by another reader; truncated at a later write")

    # Consent to training (see indexes.members)

    def set_consent(self, user_id: int, given: bool, source: str = "command") -> None:
        """Record a member's consent or its withdrawal; a role never overrides what the member said themselves."""
        now = datetime.now().astimezone().isoformat(timespec="seconds")
        with self.transaction() as db:
            db.execute(
                "INSERT INTO consent VALUES (?, ?, ?, ?) ON CONFLICT(user_id) DO UPDATE SET given = excluded.given, "
                "source = excluded.source, since = excluded.since "
                "WHERE excluded.source = 'command' OR consent.source != 'command'",
                (user_id, int(given), source, now),
            )

    def consent(self) -> dict[int, tuple[bool, str]]:
        """user id -> (consented, how it was given: 'command' or 'role'), for every member who said either."""
        with self._lock:
            return {r[0]: (bool(r[1]), r[2]) for r in self._db.execute("SELECT user_id, given, source FROM consent")}

    def author_names(self) -> set[str]:
        """Every name members are known by here (usernames and display names)."""
        sql = "SELECT author_name FROM messages UNION SELECT author_display FROM messages WHERE author_display != ''"
        with self._lock:
            return {r[0] for r in self._db.execute(sql) if r[0]}

    # Statistics

    def author_counts(self, limit: int = 20) -> list[tuple[str, int, int]]:
        """(name, author id, messages) of the most active members."""
        sql = (
            "SELECT COALESCE(NULLIF(MAX(author_display), ''), MAX(author_name)), author_id, COUNT(*) AS n "
            "FROM messages GROUP BY author_id ORDER BY n DESC LIMIT ?"
        )
        with self._lock:
            return [tuple(r) for r in self._db.execute(sql, (limit,))]

    def month_counts(self) -> list[tuple[str, int]]:
        sql = "SELECT substr(timestamp, 1, 7) AS month, COUNT(*) FROM messages GROUP BY month ORDER BY month"
        with self._lock:
            return [tuple(r) for r in self._db.execute(sql)]

    def lore_count(self, threshold: float) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM messages WHERE lore_score >= ?", (threshold,)).fetchone()[0]

    def note_thread(self, thread_id: int, parent_id: int) -> None:
        """A thread's messages are kept: remember its channel, so that deleting the channel takes them too."""
        self.set_meta(f"thread:{thread_id}", str(parent_id))

    def threads_under(self, channel_id: int) -> list[int]:
        """The threads of a channel whose messages were kept (see note_thread)."""
        with self._lock:
            rows = self._db.execute("SELECT key FROM meta WHERE key LIKE 'thread:%' AND value = ?", (str(channel_id),))
            return [int(key.removeprefix("thread:")) for (key,) in rows.fetchall()]

    def get_meta(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str | None) -> None:
        """Set a meta key, or delete it when value is None."""
        with self.transaction() as db:
            if value is None:
                db.execute("DELETE FROM meta WHERE key = ?", (key,))
            else:
                db.execute(
                    "INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    (key, value),
                )
