"""What the index has still to do: the log the store's triggers write, and each collection's cursor.

Every insert, change or deletion of a message appends its id to `index_log` in the transaction that
makes it (the triggers are part of the store's schema, indexes.store). An index collection is
registered with a cursor: what is after it in the log is pending for that collection, whatever
happens to the process that was applying it. The log holds ids only, and is pruned once every
registered collection has applied it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from indexes.store import MessageStore

MAX_SEQ = 2**63 - 1  # SQLite's largest integer: no bound


class IndexLog:
    """The store's index log and the collections' cursors (`store.index_log`)."""

    def __init__(self, store: MessageStore) -> None:
        self._store = store

    def last_change(self) -> int:
        """The newest entry of the index log (0 when nothing was ever logged)."""
        with self._store.lock:
            row = self._store.db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'index_log'").fetchone()
        return row[0] if row else 0

    def changes(self, after: int, limit: int, through: int | None = None) -> list[tuple[int, int]]:
        """(seq, message id) of the index log after `after` (and up to `through`), oldest first, at most `limit`."""
        with self._store.lock:
            rows = self._store.db.execute(
                "SELECT seq, message_id FROM index_log WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?",
                (after, MAX_SEQ if through is None else through, limit),
            ).fetchall()
        return [tuple(r) for r in rows]

    def pending(self, after: int) -> set[int]:
        """The message ids changed after `after` in the log: what a collection at that cursor lacks."""
        with self._store.lock:
            return {
                r[0]
                for r in self._store.db.execute("SELECT DISTINCT message_id FROM index_log WHERE seq > ?", (after,))
            }

    def log_changes(self, ids: Iterable[int]) -> None:
        """Mark messages as changed, so that the index applies them again (a repair)."""
        with self._store.transaction() as db:
            db.executemany("INSERT INTO index_log(message_id) VALUES (?)", [(i,) for i in ids])

    def register_collection(self, base_name: str, seq: int) -> str:
        """Record a new index collection, caught up to `seq`; returns its name.

        Names carry the registration number (later rebuilds have higher ones, whatever the clock
        says) and a random part (two stores sharing a Chroma server never collide).
        """
        with self._store.transaction() as db:
            temporary = f"{base_name}-new-{uuid.uuid4().hex}"
            number = db.execute("INSERT INTO index_collections(name, seq) VALUES (?, ?)", (temporary, seq)).lastrowid
            name = f"{base_name}-{number:06d}-{uuid.uuid4().hex[:8]}"
            db.execute("UPDATE index_collections SET name = ? WHERE number = ?", (name, number))
        return name

    def adopt_collection(self, name: str) -> None:
        """Register a collection made before the index log existed: everything logged since is pending for it."""
        with self._store.transaction() as db:
            db.execute("INSERT INTO index_collections(name, seq) VALUES (?, 0) ON CONFLICT(name) DO NOTHING", (name,))

    def collections(self) -> dict[str, tuple[int, int]]:
        """Every registered collection: name -> (number, cursor)."""
        with self._store.lock:
            return {
                r[1]: (r[0], r[2]) for r in self._store.db.execute("SELECT number, name, seq FROM index_collections")
            }

    def cursor(self, name: str) -> int | None:
        """How far a collection has applied the index log; None for a collection not registered."""
        with self._store.lock:
            row = self._store.db.execute("SELECT seq FROM index_collections WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None

    def advance(self, name: str, seq: int) -> None:
        """A collection has applied the log up to `seq`; the log entries no collection needs go."""
        with self._store.transaction() as db:
            db.execute("UPDATE index_collections SET seq = MAX(seq, ?) WHERE name = ?", (seq, name))
            db.execute(
                "DELETE FROM index_log WHERE seq <= COALESCE((SELECT MIN(seq) FROM index_collections), ?)",
                (seq,),
            )

    def unregister_collection(self, name: str) -> None:
        with self._store.transaction() as db:
            db.execute("DELETE FROM index_collections WHERE name = ?", (name,))
