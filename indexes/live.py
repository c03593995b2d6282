"""Live ingestion: the hook the bot calls for every new or edited message in its channel.

The message is filtered like an import and written to the store at once (a few milliseconds);
the same transaction logs it for the index and, for a message read from Discord, moves the
channel's `seen` mark (where a restart catches up from). Indexing (embedding, the expensive part)
happens on a background thread that applies the store's index log (`LoreIndex.sync`): messages
that arrive close together are embedded together, and a batch waits while a reply is waiting or
generating (`wait_for_replies`), so embeddings never compete with a reply for the cores.

Nothing is lost to a crash: what is stored is logged, and the log is applied at the next start.
An index failure leaves the work pending; the thread tries again at its next wake-up (a new
message, or every SWEEP_SECONDS, which also picks up work another process logged). A store that
cannot be written (a full disk) keeps the messages in arrival order, in memory, and writes them
before any later one once it can: the `seen` mark never passes a message that is not stored.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace

from indexes.disk import StorageError
from indexes.filters import Filters
from indexes.lore import score_message
from indexes.records import StoredMessage
from indexes.store import MessageStore
from indexes.vector import LoreIndex

logger = logging.getLogger(__name__)

BATCH_DELAY_SECONDS = 0.5  # let a burst of messages gather into one embedding batch
REPLY_WAIT_SECONDS = 30.0  # the longest a batch waits for replies before indexing anyway
SWEEP_SECONDS = 60.0  # how often the indexer looks for pending work nobody told it about
MAX_HELD = 5000  # messages held in memory while the store cannot be written; older ones: the catch-up


class LiveIngestion:
    """Store every message now; index them in batches, out of the replies' way."""

    def __init__(
        self,
        store: MessageStore,
        index: LoreIndex | None,
        filters: Filters,
        keywords: tuple[str, ...] = (),
        wait_for_replies: Callable[[float], bool] | None = None,
        batch_delay: float = BATCH_DELAY_SECONDS,
        sweep_seconds: float = SWEEP_SECONDS,
    ) -> None:
        self.store = store
        self.index = index
        self.filters = filters
        self.keywords = keywords
        self.wait_for_replies = wait_for_replies
        self.batch_delay = batch_delay
        self.sweep_seconds = sweep_seconds
        self._held: deque[tuple[StoredMessage, bool]] = deque()  # not stored yet: the store failed
        self._dirty = False  # the store has logged work the indexer has not looked at
        self._indexing = False
        self._closed = False
        self._condition = threading.Condition()
        self._thread: threading.Thread | None = None

    def __call__(self, message: StoredMessage, seen: bool = False) -> str | None:
        """Ingest one message; returns why it was left out, or None when it was stored.

        `seen`: the message was just read from Discord (not an edit), so the channel's `seen` mark
        moves to it. Raises StorageError when the store cannot be written; the message is then held
        and written, before any later one, once the store can be written again.
        """
        self._held.append((message, seen))
        while self._held:
            held, held_seen = self._held[0]
            try:
                reason = self._store(held, held_seen)
            except StorageError:
                while len(self._held) > MAX_HELD:  # the catch-up after a restart finds them on Discord
                    self._held.popleft()
                raise
            self._held.popleft()
        return reason

    def edit(self, message: StoredMessage) -> str | None:
        """An edited message: its new version is stored, or, when it no longer qualifies (edited into a
        bare link, a command, nothing), the stored one is deleted. Returns why it was left out, or None.
        """
        reason = self(message)
        if reason not in (None, "unchanged") and self.store.delete([message.id]):
            self.wake()
        return reason

    @property
    def held(self) -> int:
        """Messages waiting for the store to be writable again."""
        return len(self._held)

    def _store(self, message: StoredMessage, seen: bool) -> str | None:
        filters = self.filters
        opted_out = self.store.opted_out()
        if opted_out != filters.opted_out:
            self.filters = filters = replace(filters, opted_out=frozenset(opted_out))
        reason = filters.reason(message)
        if reason:
            if seen:
                self.store.mark_seen(message.channel_id, message.id)
            return reason
        if len(message.content) > filters.max_chars:
            message.content = message.content[: filters.max_chars]
        # A new message has no replies yet; answers count when lore is next re-scored (update/rebuild).
        message.lore_score, message.lore_reasons = score_message(message, 0, self.keywords)
        if not self.store.upsert([message], seen=(message.channel_id, message.id) if seen else None):
            return "unchanged"
        self.wake()
        return None

    def wake(self) -> None:
        """Tell the indexer the store has logged work (a message stored, deleted or forgotten)."""
        if self.index is None:
            return
        with self._condition:
            self._dirty = True
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._run, name="live-index", daemon=True)
                self._thread.start()
            self._condition.notify_all()

    def _run(self) -> None:
        while True:
            with self._condition:
                if not self._condition.wait_for(lambda: self._dirty or self._closed, self.sweep_seconds):
                    self._dirty = self._pending_elsewhere()
                    if not self._dirty:
                        continue
                if self._closed and not self._dirty:
                    return
            if not self._closed:
                time.sleep(self.batch_delay)  # gather the rest of a burst
                if self.wait_for_replies is not None and not self.wait_for_replies(REPLY_WAIT_SECONDS):
                    logger.debug("replies kept the model busy for %.0fs: indexing a batch anyway", REPLY_WAIT_SECONDS)
            with self._condition:
                self._dirty = False
                self._indexing = True
            try:
                self.index.sync()
            except Exception as exc:  # stored and logged: applied at the next wake-up or start
                logger.warning("stored messages not indexed yet (%s); trying again later", exc)
            finally:
                with self._condition:
                    self._indexing = False
                    self._condition.notify_all()

    def _pending_elsewhere(self) -> bool:
        try:
            return self.index.pending() > 0
        except Exception as exc:
            logger.debug("cannot look for pending index work: %s", exc)
            return False

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Wait until the indexer has applied what it was told of (or failed to); False on timeout."""
        with self._condition:
            return self._condition.wait_for(lambda: not self._dirty and not self._indexing, timeout)

    @property
    def waiting(self) -> int:
        """Messages stored but not yet in the index."""
        try:
            return self.index.pending() if self.index is not None else 0
        except Exception:
            return 0

    def close(self, timeout: float = 30.0) -> None:
        """Index what is waiting, then stop the thread (what is left stays pending in the store)."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
