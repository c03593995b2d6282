"""Opening the store and index from settings, and the first-run build from the sample server."""

from __future__ import annotations

import logging
from pathlib import Path

from indexes.filters import Filters
from indexes.importer import ImportReport, import_exports
from indexes.store import MessageStore, disk_errors
from indexes.vector import LoreIndex, build_embedding, chroma_client

logger = logging.getLogger(__name__)


def open_index(settings, store: MessageStore, embed_model=None) -> LoreIndex:
    """The lore index over embedded Chroma, or the Chroma server named by CHROMA_HOST/CHROMA_PORT."""
    location = (
        f"the Chroma server {settings.CHROMA_HOST}:{settings.CHROMA_PORT}"
        if settings.CHROMA_HOST
        else settings.chroma_path
    )
    with disk_errors(location):
        client = chroma_client(settings.chroma_path, settings.CHROMA_HOST, settings.CHROMA_PORT)
    embed_model = embed_model or build_embedding(dtype=settings.EMBED_DTYPE)
    return LoreIndex(store, client, embed_model, settings.CHROMA_COLLECTION, settings.INDEX_MIN_CHARS, str(location))


def import_path(
    settings, store: MessageStore, path: Path, any_channel: bool = False, progress: bool | None = None
) -> ImportReport:
    """Import an export file or folder with the filters and lore keywords from settings."""
    return import_exports(
        store, path, Filters.from_settings(settings, store.opted_out()),
        channel_id=None if any_channel else settings.DISCORD_CHANNEL_ID,
        keywords=settings.LORE_KEYWORDS, dayfirst=settings.IMPORT_DAYFIRST, progress=progress,
    )  # fmt: skip


def ensure_index(store: MessageStore, index: LoreIndex, sample: Path | None) -> bool:
    """Build the index on first run (from the sample export if the store is empty); True if built."""
    if index.active_name and index.size() > 0:
        return False
    if store.count() == 0:
        if sample is None or not sample.is_file():
            logger.warning("no messages and no sample export: the lore index stays empty")
            return False
        logger.info("first run: importing the sample server from %s", sample)
        import_exports(store, sample, Filters(opted_out=frozenset(store.opted_out())), progress=False)
    index.rebuild()
    return True
