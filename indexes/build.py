"""Opening the store and index from settings, and the first-run build from the sample server."""

from __future__ import annotations

import logging
from pathlib import Path

from indexes.disk import disk_errors
from indexes.filters import Filters
from indexes.importer import ImportReport, import_exports
from indexes.store import MessageStore
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
    embed_model = embed_model or (lambda: build_embedding(dtype=settings.EMBED_DTYPE))  # loaded when first needed
    folder = None if settings.CHROMA_HOST else settings.chroma_path
    return LoreIndex(
        store, client, embed_model, settings.CHROMA_COLLECTION, settings.INDEX_MIN_CHARS, str(location), folder
    )


def import_path(
    settings,
    store: MessageStore,
    path: Path,
    any_channel: bool = False,
    progress: bool | None = None,
    licensed: bool = False,
) -> ImportReport:
    """Import an export file or folder with the filters and lore keywords from settings."""
    return import_exports(
        store,
        path,
        Filters.from_settings(settings, store.opted_out()),
        channel_id=None if any_channel else settings.DISCORD_CHANNEL_ID,
        keywords=settings.LORE_KEYWORDS,
        dayfirst=settings.IMPORT_DAYFIRST,
        progress=progress,
        licensed=licensed,
    )


def ensure_index(store: MessageStore, index: LoreIndex, sample: Path | None) -> bool:
    """Build the index on first run (from the sample export if the store is empty); True if built.

    An index made by an earlier version, which kept members' words in Chroma, is rebuilt without them.
    """
    if index.active_name and not index.holds_words() and (index.size() > 0 or store.count() == 0):
        return False
    legacy = bool(index.active_name) and index.holds_words()
    if legacy:
        logger.warning("the lore index keeps members' words (an earlier version made it): rebuilding it without them")
    if store.count() == 0:
        if sample is None or not sample.is_file():
            logger.info("no messages and no sample export: the lore index starts empty and fills as members talk")
        else:
            logger.info("first run: importing the sample server from %s", sample)
            import_exports(store, sample, Filters(opted_out=frozenset(store.opted_out())), progress=False)
    index.rebuild()
    if legacy:
        index.compact()
    return True
