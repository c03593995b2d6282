"""Live ingestion: the hook the bot calls for every new or edited message in its channel.

The message is filtered like an import, written to the store, and indexed incrementally. It is
safe while a rebuild runs: the rebuild catches up with everything the store received meanwhile
(see LoreIndex.rebuild). An index failure never loses the message: it is in the store, and the
next rebuild or `index update` indexes it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from indexes.filters import Filters
from indexes.lore import score_message
from indexes.records import StoredMessage
from indexes.store import MessageStore
from indexes.vector import LoreIndex

logger = logging.getLogger(__name__)


@dataclass
class LiveIngestion:
    """Store + incremental index for one message at a time."""

    store: MessageStore
    index: LoreIndex | None
    filters: Filters
    keywords: tuple[str, ...] = ()

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
            try:
                self.index.add([message])
            except Exception as exc:  # stored; the next rebuild or update indexes it
                logger.warning("message %s stored but not indexed yet: %s", message.id, exc)
        return None
