"""Import an export into the store, score lore, and (re)build the index: the offline path."""

from __future__ import annotations

import logging
from pathlib import Path

from indexes.importers import ImportReport, read_json_export
from indexes.lore import classify
from indexes.store import MessageStore
from indexes.vector import LoreIndex

logger = logging.getLogger(__name__)


def import_export(store: MessageStore, path: Path, keywords: tuple[str, ...] = ()) -> ImportReport:
    """Import one DiscordChatExporter JSON file and re-score lore; all or nothing."""
    messages, report = read_json_export(path)
    replies: dict[int, int] = {}
    for m in messages:
        if m.reply_to:
            replies[m.reply_to] = replies.get(m.reply_to, 0) + 1
    for key, value in store.reply_counts().items():
        replies[key] = replies.get(key, 0) + value
    classify(messages, replies, keywords)
    store.upsert(messages)
    logger.info("%s: %s", path, report.summary())
    return report


def ensure_index(store: MessageStore, index: LoreIndex, sample: Path | None) -> bool:
    """Build the index on first run (from the sample export if the store is empty); True if built."""
    if index.active_name and index.size() > 0:
        return False
    if store.count() == 0:
        if sample is None or not sample.is_file():
            logger.warning("no messages and no sample export: the lore index stays empty")
            return False
        logger.info("first run: importing the sample server from %s", sample)
        import_export(store, sample)
    index.rebuild()
    return True
