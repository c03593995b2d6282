"""SQLite message store: the source of truth the lore index is derived from.

Writes are idempotent by message id: importing the same message twice keeps one row, and a newer
version (an edit) replaces the content. Each batch is one transaction, so a failed import leaves
the store as it was before the batch.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from indexes.records import StoredMessage

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
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
    lore_reasons TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS messages_channel_time ON messages (channel_id, timestamp);
CREATE INDEX IF NOT EXISTS messages_reply_to ON messages (reply_to);
CREATE INDEX IF NOT EXISTS messages_author ON messages (author_id);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

_COLUMNS = (
    "id, channel_id, guild_id, author_id, author_name, author_display, author_is_bot, type, "
    "timestamp, edited_at, content, reply_to, is_pinned, reactions, reaction_count, mentions, "
    "attachments, lore_score, lore_reasons"
)
_UPSERT = f"""
INSERT INTO messages ({_COLUMNS}) VALUES ({", ".join("?" * 19)})
ON CONFLICT(id) DO UPDATE SET
    content = excluded.content, edited_at = excluded.edited_at, is_pinned = excluded.is_pinned,
    reactions = excluded.reactions, reaction_count = excluded.reaction_count,
    author_display = excluded.author_display, lore_score = excluded.lore_score,
    lore_reasons = excluded.lore_reasons
"""


def _row(m: StoredMessage) -> tuple:
    return (
        m.id, m.channel_id, m.guild_id, m.author_id, m.author_name, m.author_display,
        int(m.author_is_bot), m.type, m.timestamp.isoformat(),
        m.edited_at.isoformat() if m.edited_at else None, m.content, m.reply_to, int(m.is_pinned),
        json.dumps(m.reactions, ensure_ascii=False), m.reaction_count, json.dumps(m.mentions),
        json.dumps(m.attachments, ensure_ascii=False), m.lore_score, json.dumps(m.lore_reasons),
    )  # fmt: skip


def _message(row: sqlite3.Row) -> StoredMessage:
    return StoredMessage(
        id=row["id"], channel_id=row["channel_id"], guild_id=row["guild_id"],
        author_id=row["author_id"], author_name=row["author_name"],
        author_display=row["author_display"], author_is_bot=bool(row["author_is_bot"]),
        type=row["type"], timestamp=datetime.fromisoformat(row["timestamp"]),
        edited_at=datetime.fromisoformat(row["edited_at"]) if row["edited_at"] else None,
        content=row["content"], reply_to=row["reply_to"], is_pinned=bool(row["is_pinned"]),
        reactions=json.loads(row["reactions"]), mentions=json.loads(row["mentions"]),
        attachments=json.loads(row["attachments"]), lore_score=row["lore_score"],
        lore_reasons=json.loads(row["lore_reasons"]),
    )  # fmt: skip


class MessageStore:
    """Thread-safe access to the SQLite message store."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.RLock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One all-or-nothing write: rolled back if the block raises."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def upsert(self, messages: Iterable[StoredMessage]) -> int:
        """Insert or update messages by id in one transaction; returns how many were written."""
        rows = [_row(m) for m in messages]
        with self.transaction() as db:
            db.executemany(_UPSERT, rows)
        return len(rows)

    def known_ids(self, ids: Iterable[int]) -> set[int]:
        ids = list(ids)
        found: set[int] = set()
        with self._lock:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                sql = f"SELECT id FROM messages WHERE id IN ({', '.join('?' * len(chunk))})"
                found.update(r[0] for r in self._db.execute(sql, chunk))
        return found

    def count(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM messages").fetchone()[0]

    def iter_messages(self, channel_id: int | None = None) -> Iterator[StoredMessage]:
        """All messages, oldest first (optionally of one channel)."""
        sql, args = f"SELECT {_COLUMNS} FROM messages", ()
        if channel_id is not None:
            sql, args = sql + " WHERE channel_id = ?", (channel_id,)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY timestamp, id", args).fetchall()
        return (_message(r) for r in rows)

    def recent(self, channel_id: int, limit: int) -> list[StoredMessage]:
        """The newest `limit` messages of a channel, oldest first."""
        sql = f"SELECT {_COLUMNS} FROM messages WHERE channel_id = ? ORDER BY timestamp DESC, id DESC LIMIT ?"
        with self._lock:
            rows = self._db.execute(sql, (channel_id, limit)).fetchall()
        return [_message(r) for r in reversed(rows)]

    def reply_counts(self) -> dict[int, int]:
        """How many replies each message received."""
        sql = "SELECT reply_to, COUNT(*) FROM messages WHERE reply_to IS NOT NULL GROUP BY reply_to"
        with self._lock:
            return dict(self._db.execute(sql).fetchall())

    def get_meta(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction() as db:
            db.execute("INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))
