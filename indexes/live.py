"""Live ingestion: the hook the bot calls for every new or edited message in its channel.

The message is filtered like an import and written to the store at once (a few milliseconds).
Indexing (embedding, the expensive part) happens on a background thread, in batches: messages
that arrive close together are embedded together, and a batch waits while a reply is waiting or
generating (`wait_for_replies`), so embeddings never compete with a reply for the cores.

It is safe while a rebuild runs: the rebuild catches up with everything the store received
meanwhile (see LoreIndex.rebuild). An index failure never loses the message: it is in the store,
and the next rebuild or `index update` indexes it. A member who opts out before their message is
indexed is left out of the batch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace

from indexes.filters import Filters
from indexes.lore import score_message
from indexes.records import StoredMessage
from indexes.store import MessageStore
from indexes.vector import LoreIndex

logger = logging.getLogger(__name__)

BATCH_DELAY_SECONDS = 0.5  # let a burst of messages gather into one embedding batch
MAX_BATCH = 64
REPLY_WAIT_SECONDS = 30.0  # the longest a batch waits for replies before indexing anyway


class LiveIngestion:
    """Store every message now; index them in batches, out of the replies' way."""

    def __init__(self, store: MessageStore, index: LoreIndex | None, filters: Filters, keywords: tuple[str, ...] = (),
                 wait_for_replies: Callable[[float], bool] | None = None, batch_delay: float = BATCH_DELAY_SECONDS) -> None:  # fmt: skip
        self.store = store
        self.index = index
        self.filters = filters
        self.keywords = keywords
        self.wait_for_replies = wait_for_replies
        self.batch_delay = batch_delay
        self._pending: dict[int, StoredMessage] = {}  # by id: an edit replaces the waiting version
        self._indexing = False
        self._closed = False
        self._condition = threading.Condition()
        self._thread: threading.Thread | None = None

    def __call__(self, message: StoredMessage) -> str | None:
        """Ingest one message; returns why it was left out, or None when it was stored."""
        filters = self.filters
        opted_out = self.store.opted_out()
        if opted_out != filters.opted_out:
            self.filters = filters = replace(filters, opted_out=frozenset(opted_out))
        reason = filters.reason(message)
        if reason:
            return reason
        if len(message.content) > filters.max_chars:
            message.content = message.content[: filters.max_chars]
        # A new message has no replies yet; answers count when lore is next re-scored (update/rebuild).
        message.lore_score, message.lore_reasons = score_message(message, 0, self.keywords)
        if not self.store.upsert([message]):
            return "unchanged"
        if self.index is not None:
            self._enqueue(message)
        return None

    def _enqueue(self, message: StoredMessage) -> None:
        with self._condition:
            self._pending[message.id] = message
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._run, name="live-index", daemon=True)
                self._thread.start()
            self._condition.notify_all()

    def _run(self) -> None:
        while True:
            with self._condition:
                self._condition.wait_for(lambda: self._pending or self._closed)
                if self._closed and not self._pending:
                    return
            time.sleep(self.batch_delay)  # gather the rest of a burst
            if self.wait_for_replies is not None and not self.wait_for_replies(REPLY_WAIT_SECONDS):
                logger.debug("replies kept the model busy for %.0fs: indexing a batch anyway", REPLY_WAIT_SECONDS)
            with self._condition:
                ids = list(self._pending)[:MAX_BATCH]
                batch = [self._pending.pop(i) for i in ids]
                self._indexing = True
            try:
                self._index(batch)
            finally:
                with self._condition:
                    self._indexing = False
                    self._condition.notify_all()

    def _index(self, batch: list[StoredMessage]) -> None:
        opted_out = self.store.opted_out()
        batch = [m for m in batch if m.author_id not in opted_out]  # forgotten while it waited
        try:
            self.index.add(batch)
        except Exception as exc:  # stored; the next rebuild or update indexes them
            logger.warning("%d messages stored but not indexed yet: %s", len(batch), exc)

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Wait until every stored message has been indexed (or has failed to be); False on timeout."""
        with self._condition:
            return self._condition.wait_for(lambda: not self._pending and not self._indexing, timeout)

    @property
    def waiting(self) -> int:
        with self._condition:
            return len(self._pending)

    def close(self, timeout: float = 30.0) -> None:
        """Index what is waiting, then stop the thread."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
